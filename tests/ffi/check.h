/*
 * Checks and file helpers shared by the C test programs (api_test.c, generate_test.c).
 * Header-only: each program is one translation unit, so `static` keeps one copy per program.
 */
#ifndef FQGAN_TEST_CHECK_H
#define FQGAN_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fqgan.h"

static int failures = 0;

/* Checks a call's status and that fqgan_last_error() contains `needle`. */
#define EXPECT(call, expected, needle) expect((call), (expected), (needle), #call, __LINE__)

static void expect(fqgan_status got, fqgan_status expected, const char *needle, const char *call, int line) {
    const char *message = fqgan_last_error();
    if (got != expected || strstr(message, needle) == NULL) {
        fprintf(stderr, "line %d: %s\n  status %d (expected %d), message \"%s\" (expected to contain \"%s\")\n", line,
                call, got, expected, message, needle);
        failures++;
    }
}

static void check(int condition, const char *what, int line) {
    if (!condition) {
        fprintf(stderr, "line %d: %s\n", line, what);
        failures++;
    }
}
#define CHECK(condition) check((condition), #condition, __LINE__)

static inline unsigned char *read_file(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    fseek(file, 0, SEEK_END);
    *size = (size_t)ftell(file);
    fseek(file, 0, SEEK_SET);
    unsigned char *data = malloc(*size);
    if (data && fread(data, 1, *size, file) != *size) {
        free(data);
        data = NULL;
    }
    fclose(file);
    return data;
}

/* A progress callback's record: every call, in order (done = 1, 2, ... <= total), and a stop
 * (non-zero return) at `cancel_at` when that is set. Initialise with {0, 0, 0, cancel_at, 1}. */
struct progress {
    uint32_t calls, last_done, total, cancel_at;
    int in_order;
};

static inline int on_progress(void *user_data, uint32_t done, uint32_t total) {
    struct progress *p = user_data;
    p->calls++;
    p->in_order &= done == p->last_done + 1 && done <= total;
    p->last_done = done;
    p->total = total;
    return p->cancel_at != 0 && done == p->cancel_at;
}

static inline void write_file(const char *dir, const char *name, const void *data, size_t size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen(path, "wb");
    CHECK(file != NULL && fwrite(data, 1, size, file) == size);
    if (file) fclose(file);
}

#endif
