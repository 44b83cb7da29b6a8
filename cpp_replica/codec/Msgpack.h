// One include point for msgpack-cxx so every translation unit sees the same configuration.
// Why MSGPACK_NO_BOOST: Debian's msgpack-cxx would otherwise pull in Boost headers we neither
// ship nor need (we only use the core object model, packer and unpacker).
#pragma once
#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>
