#pragma once
#include <string>
#include <string_view>

namespace replica {

/// The shared-secret handshake's crypto (docs/protocol.md "Handshake"). Thread-safe, stateless.
class Auth {
public:
    /// HMAC-SHA256(secret, label + initiatorNonce + acceptorNonce), 32 bytes.
    static std::string mac(std::string_view secret, std::string_view label,
                           std::string_view initiatorNonce, std::string_view acceptorNonce);
    /// Constant-time equality (CRYPTO_memcmp), false when sizes differ.
    static bool equal(std::string_view a, std::string_view b);
    /// `n` bytes from the OS CSPRNG (RAND_bytes).
    static std::string nonce(std::size_t n);
};

}  // namespace replica
