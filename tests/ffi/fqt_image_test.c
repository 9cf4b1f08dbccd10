/*
 * Whole images to and from .fqt bytes through the C API; run by tests/ffi.rs.
 *
 *   fqt_image_test MODEL.safetensors OTHER_MODEL.safetensors IN.rgba WIDTH HEIGHT OUT_DIR
 *
 * IN.rgba is WIDTH x HEIGHT packed RGBA8 with a real alpha plane. Writes OUT_DIR/image.fqt
 * (default params) and OUT_DIR/decoded.rgba for the Rust side to compare with its codec, and
 * checks here: the size bound, bottom-up rows both ways, progress and cancel, an opaque image
 * storing no alpha, and every bad argument.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct counter {
    uint32_t calls, last_done, total, stop_at;
};

static int count_tiles(void *user_data, uint32_t done, uint32_t total) {
    struct counter *c = user_data;
    c->calls++;
    if (done <= c->last_done || done > total) c->total = 0; /* out of order: fail below */
    c->last_done = done;
    c->total = total;
    return c->stop_at != 0 && done >= c->stop_at;
}

static unsigned char *flipped(const unsigned char *rgba, uint32_t width, uint32_t height) {
    size_t row = (size_t)width * 4;
    unsigned char *out = malloc(row * height);
    for (uint32_t y = 0; y < height; y++) memcpy(out + (height - 1 - y) * row, rgba + y * row, row);
    return out;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s MODEL OTHER_MODEL IN.rgba WIDTH HEIGHT OUT_DIR\n", argv[0]);
        return 2;
    }
    const uint32_t width = (uint32_t)atoi(argv[4]), height = (uint32_t)atoi(argv[5]);
    const char *out_dir = argv[6];
    size_t in_size = 0;
    unsigned char *rgba = read_file(argv[3], &in_size);
    CHECK(rgba != NULL && in_size == (size_t)width * height * 4);
    fqgan_tokenizer *tok = NULL, *other = NULL;
    CHECK(fqgan_tokenizer_load_file(argv[1], NULL, &tok) == FQGAN_STATUS_OK);
    CHECK(fqgan_tokenizer_load_file(argv[2], NULL, &other) == FQGAN_STATUS_OK);
    if (!rgba || !tok || !other) return 1;
    CHECK(fqgan_abi_minor_version() >= 3);

    fqgan_image image = {rgba, width, height, (size_t)width * 4, FQGAN_PIXEL_FORMAT_RGBA8};
    fqgan_fqt_image_params params = fqgan_fqt_image_params_default();
    CHECK(params.overlap == FQGAN_OVERLAP_DEFAULT && params.coding == FQGAN_FQT_CODING_ENTROPY);

    /* The bound, then the file. */
    size_t bound = 0, size = 0;
    EXPECT(fqgan_fqt_encode_image(tok, &image, NULL, NULL, NULL, NULL, 0, &bound), FQGAN_STATUS_OK, "");
    CHECK(bound > 64);
    unsigned char *fqt = malloc(bound);
    EXPECT(fqgan_fqt_encode_image(tok, &image, NULL, NULL, NULL, fqt, bound - 1, &size), FQGAN_STATUS_BUFFER_TOO_SMALL,
           "bytes_capacity");
    struct counter progress = {0};
    EXPECT(fqgan_fqt_encode_image(tok, &image, &params, count_tiles, &progress, fqt, bound, &size), FQGAN_STATUS_OK,
           "");
    CHECK(size > 0 && size <= bound);
    CHECK(progress.calls >= 1 && progress.last_done == progress.total && progress.total > 1);
    write_file(out_dir, "image.fqt", fqt, size);

    fqgan_fqt_info info = {.struct_size = sizeof info};
    EXPECT(fqgan_fqt_read(tok, fqt, size, &info, NULL, 0, NULL), FQGAN_STATUS_OK, "");
    CHECK(info.width == width && info.height == height && info.has_alpha == 1 && info.tiles_x * info.tiles_y > 1);
    CHECK(info.coding == FQGAN_FQT_CODING_ENTROPY && info.tile_overlap == info.tile_size / 8);

    /* Bottom-up rows give the same file. */
    unsigned char *upside_down = flipped(rgba, width, height);
    fqgan_image bottom_up_image = image;
    bottom_up_image.pixels = upside_down;
    fqgan_fqt_image_params bottom_up = params;
    bottom_up.bottom_up = 1;
    unsigned char *again = malloc(bound);
    size_t again_size = 0;
    EXPECT(fqgan_fqt_encode_image(tok, &bottom_up_image, &bottom_up, NULL, NULL, again, bound, &again_size),
           FQGAN_STATUS_OK, "");
    CHECK(again_size == size && memcmp(again, fqt, size) == 0);

    /* Decoding: the size query, the image, and bottom-up rows. */
    size_t required = 0, pixels = (size_t)width * height * 4;
    EXPECT(fqgan_fqt_decode_image(tok, fqt, size, NULL, NULL, NULL, NULL, 0, &required), FQGAN_STATUS_OK, "");
    CHECK(required == pixels);
    unsigned char *decoded = malloc(pixels), *decoded_up = malloc(pixels);
    memset(&progress, 0, sizeof progress);
    EXPECT(fqgan_fqt_decode_image(tok, fqt, size, NULL, count_tiles, &progress, decoded, pixels, NULL),
           FQGAN_STATUS_OK, "");
    CHECK(progress.last_done == progress.total && progress.total == info.tiles_x * info.tiles_y);
    write_file(out_dir, "decoded.rgba", decoded, pixels);
    EXPECT(fqgan_fqt_decode_image(tok, fqt, size, &bottom_up, NULL, NULL, decoded_up, pixels, NULL), FQGAN_STATUS_OK,
           "");
    unsigned char *expected_up = flipped(decoded, width, height);
    CHECK(memcmp(decoded_up, expected_up, pixels) == 0);

    /* Cancel, both ways: the output is left as it was. */
    struct counter stop = {.stop_at = 1};
    memset(again, 0xAB, bound);
    EXPECT(fqgan_fqt_encode_image(tok, &image, NULL, count_tiles, &stop, again, bound, &again_size),
           FQGAN_STATUS_CANCELLED, "cancelled");
    CHECK(again[0] == 0xAB && stop.calls == 1);
    stop.calls = 0;
    memset(decoded_up, 0xAB, pixels);
    EXPECT(fqgan_fqt_decode_image(tok, fqt, size, NULL, count_tiles, &stop, decoded_up, pixels, NULL),
           FQGAN_STATUS_CANCELLED, "cancelled");
    CHECK(decoded_up[0] == 0xAB && stop.calls == 1);

    /* An opaque RGBA image stores no alpha; RGB8 input with padded rows works too. */
    for (size_t i = 3; i < in_size; i += 4) upside_down[i] = 255;
    fqgan_image opaque = {upside_down, width, height, (size_t)width * 4, FQGAN_PIXEL_FORMAT_RGBA8};
    EXPECT(fqgan_fqt_encode_image(tok, &opaque, NULL, NULL, NULL, again, bound, &again_size), FQGAN_STATUS_OK, "");
    EXPECT(fqgan_fqt_read(tok, again, again_size, &info, NULL, 0, NULL), FQGAN_STATUS_OK, "");
    CHECK(info.has_alpha == 0);
    size_t stride = (size_t)width * 3 + 7;
    unsigned char *rgb = calloc(stride * height, 1);
    for (size_t y = 0; y < height; y++)
        for (size_t x = 0; x < width; x++) memcpy(rgb + y * stride + x * 3, upside_down + (y * width + x) * 4, 3);
    fqgan_image padded = {rgb, width, height, stride, FQGAN_PIXEL_FORMAT_RGB8};
    unsigned char *from_rgb = malloc(bound);
    size_t from_rgb_size = 0;
    EXPECT(fqgan_fqt_encode_image(tok, &padded, NULL, NULL, NULL, from_rgb, bound, &from_rgb_size), FQGAN_STATUS_OK,
           "");
    CHECK(from_rgb_size == again_size && memcmp(from_rgb, again, again_size) == 0);

    /* Bad arguments (a failed call may still report the bound in its size argument). */
    size_t junk = 0;
    EXPECT(fqgan_fqt_encode_image(NULL, &image, NULL, NULL, NULL, fqt, bound, &junk), FQGAN_STATUS_INVALID_ARGUMENT,
           "`tokenizer` is null");
    EXPECT(fqgan_fqt_encode_image(tok, NULL, NULL, NULL, NULL, fqt, bound, &junk), FQGAN_STATUS_INVALID_ARGUMENT,
           "`image` is null");
    fqgan_fqt_image_params bad = params;
    bad.coding = 9;
    EXPECT(fqgan_fqt_encode_image(tok, &image, &bad, NULL, NULL, fqt, bound, &junk), FQGAN_STATUS_INVALID_ARGUMENT,
           "`params->coding` is 9");
    bad = params;
    bad.struct_size = 3;
    EXPECT(fqgan_fqt_encode_image(tok, &image, &bad, NULL, NULL, fqt, bound, &junk), FQGAN_STATUS_INVALID_ARGUMENT,
           "struct_size");
    bad = params;
    bad.overlap = 40;
    EXPECT(fqgan_fqt_encode_image(tok, &image, &bad, NULL, NULL, fqt, bound, &junk), FQGAN_STATUS_INVALID_ARGUMENT,
           "`params->overlap` is 40");
    bad = params;
    bad.max_work_pixels = 100;
    EXPECT(fqgan_fqt_encode_image(tok, &image, &bad, NULL, NULL, fqt, bound, &junk), FQGAN_STATUS_INVALID_ARGUMENT,
           "more than the limit of 100");
    EXPECT(fqgan_fqt_decode_image(tok, fqt, size, &bad, NULL, NULL, decoded, pixels, NULL),
           FQGAN_STATUS_INVALID_ARGUMENT, "more than the limit of 100");
    fqgan_image empty = image;
    empty.width = 0;
    EXPECT(fqgan_fqt_encode_image(tok, &empty, NULL, NULL, NULL, fqt, bound, &junk), FQGAN_STATUS_INVALID_ARGUMENT,
           "image");
    EXPECT(fqgan_fqt_decode_image(tok, fqt, size, NULL, NULL, NULL, decoded, pixels - 1, NULL),
           FQGAN_STATUS_BUFFER_TOO_SMALL, "rgba_capacity");
    EXPECT(fqgan_fqt_decode_image(other, fqt, size, NULL, NULL, NULL, decoded, pixels, NULL),
           FQGAN_STATUS_INVALID_ARGUMENT, "decode it with the model it was compressed with");
    fqt[size / 2] ^= 0x10;
    EXPECT(fqgan_fqt_decode_image(tok, fqt, size, NULL, NULL, NULL, decoded, pixels, NULL),
           FQGAN_STATUS_INVALID_ARGUMENT, "checksum");

    fqgan_tokenizer_free(tok);
    fqgan_tokenizer_free(other);
    free(rgba), free(fqt), free(upside_down), free(again), free(decoded), free(decoded_up), free(expected_up), free(rgb),
        free(from_rgb);
    if (failures) fprintf(stderr, "%d checks failed\n", failures);
    return failures ? 1 : 0;
}
