/*
 * Generates an image of a class with a FAR generator and its tokenizer, printing progress,
 * and saves it as a binary PPM (P6) plus its tokens as a .fqt file.
 *
 *   generate FAR.safetensors TOKENIZER.safetensors CLASS SEED OUT.ppm OUT.fqt [DEVICE]
 *
 * Build and run: see examples/c/README.md.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fqgan.h"

/* Writes RGBA8 pixels as a P6 PPM (alpha dropped). */
static int write_ppm(const char *path, const unsigned char *rgba, uint32_t width, uint32_t height) {
    FILE *file = fopen(path, "wb");
    if (!file) return 0;
    fprintf(file, "P6\n%u %u\n255\n", width, height);
    for (size_t i = 0; i < (size_t)width * height; i++) fwrite(rgba + 4 * i, 1, 3, file);
    return fclose(file) == 0;
}

/* The progress callback: user_data is the stream to print to. Returning non-zero would cancel
 * the call (FQGAN_STATUS_CANCELLED). */
static int show_progress(void *user_data, uint32_t done, uint32_t total) {
    fprintf((FILE *)user_data, "\rtoken %u/%u%s", done, total, done == total ? "\n" : "");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s FAR.safetensors TOKENIZER.safetensors CLASS SEED OUT.ppm OUT.fqt [DEVICE]\n", argv[0]);
        return 2;
    }
    fqgan_generator_params load_gen = fqgan_generator_params_default();
    fqgan_tokenizer_params load_tok = fqgan_tokenizer_params_default();
    if (argc > 7) load_gen.device = load_tok.device = argv[7];
    fqgan_generator *gen = NULL;
    fqgan_tokenizer *tok = NULL;
    unsigned char *rgba = NULL, *fqt = NULL;
    uint32_t *tokens = NULL;
    int status = 1;
    if (fqgan_generator_load_file(argv[1], &load_gen, &gen) || fqgan_tokenizer_load_file(argv[2], &load_tok, &tok)) {
        fprintf(stderr, "loading: %s\n", fqgan_last_error());
        goto done;
    }

    /* One image; the official sampling defaults (cfg 2, temperature 1, no top-k / top-p). */
    fqgan_generate_params params = fqgan_generate_params_default();
    params.class_id = (uint32_t)strtoul(argv[3], NULL, 10);
    params.seed = strtoull(argv[4], NULL, 10);
    fqgan_tokenizer_info info = {.struct_size = sizeof info};
    size_t count = 0, fqt_size = 0;
    if (fqgan_tokenizer_get_info(tok, &info) || fqgan_generate(gen, &params, NULL, 0, &count, NULL, NULL)) {
        fprintf(stderr, "%s\n", fqgan_last_error());
        goto done;
    }
    tokens = malloc(count * sizeof *tokens);
    rgba = malloc(info.rgba_size);
    /* Tokens, then the image they decode to: what fqgan_generate_images does in one call. */
    if (fqgan_generate(gen, &params, tokens, count, NULL, show_progress, stderr) ||
        fqgan_tokenizer_decode(tok, tokens, count, rgba, info.rgba_size, NULL)) {
        fprintf(stderr, "generating: %s\n", fqgan_last_error());
        goto done;
    }
    if (!write_ppm(argv[5], rgba, info.image_width, info.image_height)) {
        fprintf(stderr, "cannot write %s\n", argv[5]);
        goto done;
    }

    /* The tokens as a .fqt file: ask for the size, then write. */
    if (fqgan_fqt_write(tok, NULL, tokens, count, NULL, 0, &fqt_size) || !(fqt = malloc(fqt_size)) ||
        fqgan_fqt_write(tok, NULL, tokens, count, fqt, fqt_size, NULL)) {
        fprintf(stderr, "writing the .fqt: %s\n", fqgan_last_error());
        goto done;
    }
    FILE *file = fopen(argv[6], "wb");
    int written = file && fwrite(fqt, 1, fqt_size, file) == fqt_size;
    if ((file && fclose(file) != 0) || !written) {
        fprintf(stderr, "cannot write %s\n", argv[6]);
        goto done;
    }
    printf("class %u, seed %s: %zu tokens -> %s, %zu bytes -> %s\n", params.class_id, argv[4], count, argv[5], fqt_size,
           argv[6]);
    status = 0;
done:
    fqgan_generator_free(gen);
    fqgan_tokenizer_free(tok);
    free(tokens);
    free(rgba);
    free(fqt);
    return status;
}
