#pragma once
// CHECK for fuzz targets: an invariant that must hold for every input. Unlike assert it is
// never compiled out, and it aborts so libFuzzer records the input as a crash reproducer.
#include <cstdio>
#include <cstdlib>

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            std::abort();                                                                \
        }                                                                                \
    } while (0)
