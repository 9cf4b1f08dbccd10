/*
 * Crafted model files through the C loaders; run by tests/ffi.rs under a 1 GiB address-space
 * cap, so an allocation failure would end this program with a signal instead of a status.
 *
 *   hostile_test (tokenizer|generator) PATH NEEDLE [...]
 *
 * Each file must be refused with FQGAN_STATUS_INVALID_MODEL, a message containing NEEDLE (the
 * config field at fault) and no handle.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"

int main(int argc, char **argv) {
    if (argc < 4 || (argc - 1) % 3 != 0) {
        fprintf(stderr, "usage: %s (tokenizer|generator) PATH NEEDLE [...]\n", argv[0]);
        return 2;
    }
    for (int i = 1; i + 2 < argc; i += 3) {
        const char *kind = argv[i], *path = argv[i + 1], *needle = argv[i + 2];
        if (strcmp(kind, "tokenizer") == 0) {
            fqgan_tokenizer *tok = (fqgan_tokenizer *)&failures;
            EXPECT(fqgan_tokenizer_load_file(path, NULL, &tok), FQGAN_STATUS_INVALID_MODEL, needle);
            CHECK(tok == NULL);
        } else {
            fqgan_generator *gen = (fqgan_generator *)&failures;
            EXPECT(fqgan_generator_load_file(path, NULL, &gen), FQGAN_STATUS_INVALID_MODEL, needle);
            CHECK(gen == NULL);
        }
    }
    if (failures) fprintf(stderr, "%d checks failed\n", failures);
    return failures ? 1 : 0;
}
