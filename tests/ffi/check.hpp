// Checks shared by the C++ test programs (wrapper_test.cpp, generate_wrapper_test.cpp).
// Header-only: each program is one translation unit, so `static` keeps one copy per program.
#ifndef FQGAN_TEST_CHECK_HPP
#define FQGAN_TEST_CHECK_HPP

#include <iostream>
#include <string>

#include "fqgan.hpp"

static int failures = 0;

#define CHECK(condition)                                                            \
    do {                                                                            \
        if (!(condition)) {                                                         \
            std::cerr << "line " << __LINE__ << ": " << #condition << " failed\n"; \
            failures++;                                                             \
        }                                                                           \
    } while (0)

// Runs `body`, which must throw fqgan::Error with `status` and a message containing `needle`.
template <class Body>
static void expect_error(int line, fqgan_status status, const std::string &needle, Body body) {
    try {
        body();
        std::cerr << "line " << line << ": no exception\n";
        failures++;
    } catch (const fqgan::Error &e) {
        if (e.status() != status || std::string(e.what()).find(needle) == std::string::npos) {
            std::cerr << "line " << line << ": status " << e.status() << " \"" << e.what() << "\", expected " << status
                      << " with \"" << needle << "\"\n";
            failures++;
        }
    }
}
#define EXPECT_ERROR(status, needle, body) expect_error(__LINE__, status, needle, [&] { body; })

#endif
