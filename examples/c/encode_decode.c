/*
 * Encodes a binary PPM (P6) image into FQGAN token grids and decodes it back.
 *
 *   encode_decode MODEL.safetensors IN.ppm OUT.ppm [DEVICE]
 *
 * IN.ppm must be the model's image size (the program prints it when it is not). Build and run:
 * see examples/c/README.md.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fqgan.h"

/* Reads a P6 PPM with maxval 255 into a malloc'ed RGB8 buffer; returns NULL on any problem. */
static unsigned char *read_ppm(const char *path, uint32_t *width, uint32_t *height) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    unsigned maxval = 0;
    unsigned char *rgb = NULL;
    if (fscanf(file, "P6 %u %u %u", width, height, &maxval) == 3 && maxval == 255 && fgetc(file) != EOF) {
        size_t size = (size_t)*width * *height * 3;
        rgb = malloc(size);
        if (rgb && fread(rgb, 1, size, file) != size) {
            free(rgb);
            rgb = NULL;
        }
    }
    fclose(file);
    return rgb;
}

/* Writes RGBA8 pixels as a P6 PPM (alpha dropped). */
static int write_ppm(const char *path, const unsigned char *rgba, uint32_t width, uint32_t height) {
    FILE *file = fopen(path, "wb");
    if (!file) return 0;
    fprintf(file, "P6\n%u %u\n255\n", width, height);
    for (size_t i = 0; i < (size_t)width * height; i++) fwrite(rgba + 4 * i, 1, 3, file);
    return fclose(file) == 0;
}

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, fqgan_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.safetensors IN.ppm OUT.ppm [cpu|ndarray|cuda:N]\n", argv[0]);
        return 2;
    }
    if (fqgan_abi_version() != FQGAN_ABI_VERSION) {
        fprintf(stderr, "libfqgan ABI %u, this program was built for %u\n", fqgan_abi_version(), FQGAN_ABI_VERSION);
        return 1;
    }

    fqgan_tokenizer_params params = fqgan_tokenizer_params_default();
    if (argc > 4) params.device = argv[4];
    fqgan_tokenizer *tok = NULL;
    if (fqgan_tokenizer_load_file(argv[1], &params, &tok) != FQGAN_STATUS_OK) return fail("load");

    fqgan_tokenizer_info info = {.struct_size = sizeof info};
    if (fqgan_tokenizer_get_info(tok, &info) != FQGAN_STATUS_OK) return fail("info");
    printf("fqgan %s on %s: %u sub-codebooks, %ux%u images -> %ux%u token grids\n", fqgan_version(), info.device,
           info.codebook_count, info.image_width, info.image_height, info.grid_width, info.grid_height);

    uint32_t width, height;
    unsigned char *rgb = read_ppm(argv[2], &width, &height);
    if (!rgb) {
        fprintf(stderr, "%s: not a readable binary PPM (P6, maxval 255)\n", argv[2]);
        return 1;
    }
    fqgan_image image = {rgb, width, height, (size_t)width * 3, FQGAN_PIXEL_FORMAT_RGB8};
    uint32_t *tokens = malloc(info.token_count * sizeof *tokens);
    unsigned char *rgba = malloc(info.rgba_size);
    int status = 1;
    if (fqgan_tokenizer_encode(tok, &image, tokens, info.token_count, NULL) != FQGAN_STATUS_OK) {
        fail("encode");
    } else if (fqgan_tokenizer_decode(tok, tokens, info.token_count, rgba, info.rgba_size, NULL) != FQGAN_STATUS_OK) {
        fail("decode");
    } else if (!write_ppm(argv[3], rgba, info.image_width, info.image_height)) {
        perror(argv[3]);
    } else {
        printf("first tokens: %u %u %u ... -> %s\n", tokens[0], tokens[1], tokens[2], argv[3]);
        status = 0;
    }
    free(rgba);
    free(tokens);
    free(rgb);
    fqgan_tokenizer_free(tok);
    return status;
}
