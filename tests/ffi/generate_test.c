/*
 * Exercises generation and .fqt files through the C API; run by tests/ffi.rs.
 *
 *   generate_test FAR.safetensors TOKENIZER.safetensors OTHER_TOKENIZER.safetensors OUT_DIR
 *
 * FAR and TOKENIZER are a matching pair (2 sub-tokens of 256 ids, 4x4 grid, 10 classes, 64x64
 * images); OTHER_TOKENIZER is a different model. Generates 2 images of class 3 with seed 7
 * (cfg 2, temperature 1, top_k 0, top_p 0.9), checks progress, cancellation, every bad input,
 * threads, prefix completion, and writes OUT_DIR/{tokens.u32, completed.u32, images.rgba,
 * packed.fqt, entropy.fqt} for the Rust side to compare with its own API.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Progress state passed through user_data: counts calls, cancels after `cancel_at` if non-zero. */
struct job {
    const fqgan_generator *gen;
    const fqgan_generate_params *params;
    uint32_t *tokens;
    size_t count;
    fqgan_status status;
};

static void *generate_job(void *arg) {
    struct job *job = arg;
    job->status = fqgan_generate(job->gen, job->params, job->tokens, job->count, NULL, NULL, NULL);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s FAR TOKENIZER OTHER_TOKENIZER OUT_DIR\n", argv[0]);
        return 2;
    }
    const char *far_path = argv[1], *tok_path = argv[2], *out_dir = argv[4];

    /* Loading: bad arguments, then from memory. */
    fqgan_generator *gen = (fqgan_generator *)&failures; /* must be reset to NULL on failure */
    EXPECT(fqgan_generator_load_file(NULL, NULL, &gen), FQGAN_STATUS_INVALID_ARGUMENT, "`path` is null");
    CHECK(gen == NULL);
    EXPECT(fqgan_generator_load_file(far_path, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`out_generator` is null");
    EXPECT(fqgan_generator_load_file("/nonexistent/far.safetensors", NULL, &gen), FQGAN_STATUS_IO, "/nonexistent");
    EXPECT(fqgan_generator_load_file(tok_path, NULL, &gen), FQGAN_STATUS_INVALID_MODEL, "is a tokenizer");
    fqgan_generator_params load = fqgan_generator_params_default();
    CHECK(load.struct_size == sizeof load && strcmp(load.device, "cpu") == 0);
    load.device = "tpu";
    EXPECT(fqgan_generator_load_file(far_path, &load, &gen), FQGAN_STATUS_INVALID_ARGUMENT, "`params->device`");
    static const char garbage[] = "not a model";
    EXPECT(fqgan_generator_load_memory(garbage, sizeof garbage, NULL, &gen), FQGAN_STATUS_INVALID_MODEL, "<memory>");
    EXPECT(fqgan_generator_load_memory(garbage, 0, NULL, &gen), FQGAN_STATUS_INVALID_ARGUMENT, "`size` is 0");
    CHECK(gen == NULL);
    fqgan_generator_free(NULL);

    size_t far_size = 0;
    unsigned char *far_bytes = read_file(far_path, &far_size);
    fqgan_tokenizer *tok = NULL, *other = NULL;
    load.device = "cpu";
    /* Loads report every tensor read and stop when asked (ABI minor 4). */
    struct progress loading = {0, 0, 0, 0, 1}, stopping = {0, 0, 0, 2, 1};
    EXPECT(fqgan_generator_load_memory_with_progress(far_bytes, far_size, &load, on_progress, &loading, &gen),
           FQGAN_STATUS_OK, "");
    CHECK(gen != NULL && loading.in_order && loading.calls == loading.total && loading.total > 10);
    fqgan_generator_free(gen);
    EXPECT(fqgan_generator_load_file_with_progress(far_path, &load, on_progress, &stopping, &gen),
           FQGAN_STATUS_CANCELLED, "cancelled");
    CHECK(gen == NULL && stopping.calls == 2);
    EXPECT(fqgan_generator_load_memory(far_bytes, far_size, &load, &gen), FQGAN_STATUS_OK, "");
    free(far_bytes);
    EXPECT(fqgan_tokenizer_load_file(tok_path, NULL, &tok), FQGAN_STATUS_OK, "");
    EXPECT(fqgan_tokenizer_load_file(argv[3], NULL, &other), FQGAN_STATUS_OK, "");
    if (!gen || !tok || !other) return 1;

    /* Info. */
    fqgan_generator_info info = {.struct_size = 8};
    EXPECT(fqgan_generator_get_info(gen, &info), FQGAN_STATUS_INVALID_ARGUMENT, "`info->struct_size` is 8");
    info.struct_size = sizeof info;
    EXPECT(fqgan_generator_get_info(gen, &info), FQGAN_STATUS_OK, "");
    CHECK(info.class_count == 10 && info.codebook_count == 2 && info.grid_width == 4 && info.grid_height == 4);
    CHECK(info.token_count == 32 && info.supports_guidance == 1 && strcmp(info.device, "cpu") == 0);
    uint32_t vocab = 0;
    EXPECT(fqgan_generator_get_vocab_size(gen, 1, &vocab), FQGAN_STATUS_OK, "");
    CHECK(vocab == 256);
    EXPECT(fqgan_generator_get_vocab_size(gen, 2, &vocab), FQGAN_STATUS_INVALID_ARGUMENT, "`index` is 2");
    EXPECT(fqgan_generator_get_vocab_size(gen, 0, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`size` is null");
    EXPECT(fqgan_generator_get_info(NULL, &info), FQGAN_STATUS_INVALID_ARGUMENT, "`generator` is null");

    /* Parameters: the official defaults, then the run the Rust side reproduces. */
    fqgan_generate_params params = fqgan_generate_params_default();
    CHECK(params.struct_size == sizeof params && params.count == 1 && params.class_id == 0);
    CHECK(params.cfg_scale == 2.0f && params.temperature == 1.0f && params.top_k == 0 && params.top_p == 1.0f);
    params.class_id = 3;
    params.count = 2;
    params.seed = 7;
    params.top_p = 0.9f;
    const size_t n = 2 * info.token_count;
    uint32_t *tokens = calloc(n, sizeof *tokens), *again = calloc(n, sizeof *again);
    size_t required = 0;
    EXPECT(fqgan_generate(gen, &params, NULL, 0, &required, NULL, NULL), FQGAN_STATUS_OK, "");
    CHECK(required == n);

    struct progress progress = {0, 0, 0, 0, 1};
    EXPECT(fqgan_generate(gen, &params, tokens, n, NULL, on_progress, &progress), FQGAN_STATUS_OK, "");
    CHECK(progress.calls == 16 && progress.total == 16 && progress.last_done == 16 && progress.in_order);
    EXPECT(fqgan_generate(gen, &params, again, n, NULL, NULL, NULL), FQGAN_STATUS_OK, "");
    CHECK(memcmp(tokens, again, n * sizeof *tokens) == 0); /* a seed fixes the tokens */
    for (size_t i = 0; i < n; i++) CHECK(tokens[i] < 256);

    /* Cancellation leaves the output untouched. */
    struct progress cancel = {0, 0, 0, 5, 1};
    memset(again, 0xAB, n * sizeof *again);
    EXPECT(fqgan_generate(gen, &params, again, n, NULL, on_progress, &cancel), FQGAN_STATUS_CANCELLED, "cancelled");
    CHECK(cancel.calls == 5 && again[0] == 0xABABABABu && again[n - 1] == 0xABABABABu);

    /* Prefix completion (ABI minor 3): image 0's top 2 token rows kept in both images, the
       other 2 rows continued (written for the Rust side to reproduce). */
    uint32_t *completed = calloc(n, sizeof *completed);
    const size_t one = info.token_count;
    struct progress rows = {0, 0, 0, 0, 1};
    EXPECT(fqgan_generate_completion(gen, &params, tokens, one, 2, NULL, 0, &required, NULL, NULL), FQGAN_STATUS_OK, "");
    CHECK(required == n);
    EXPECT(fqgan_generate_completion(gen, &params, tokens, one, 2, completed, n, NULL, on_progress, &rows),
           FQGAN_STATUS_OK, "");
    CHECK(rows.calls == 8 && rows.total == 8 && rows.in_order); /* 16 positions, 8 kept */
    for (size_t image = 0; image < 2; image++)
        for (size_t j = 0; j < 2; j++)
            CHECK(memcmp(completed + image * 32 + j * 16, tokens + j * 16, 8 * sizeof *tokens) == 0);
    EXPECT(fqgan_generate_completion(gen, &params, NULL, one, 2, again, n, NULL, NULL, NULL),
           FQGAN_STATUS_INVALID_ARGUMENT, "`prefix` is null");
    EXPECT(fqgan_generate_completion(gen, &params, tokens, one, 4, again, n, NULL, NULL, NULL),
           FQGAN_STATUS_INVALID_ARGUMENT, "`prefix_rows` is 4; keep 1..3");
    EXPECT(fqgan_generate_completion(gen, &params, tokens, one, 0, again, n, NULL, NULL, NULL),
           FQGAN_STATUS_INVALID_ARGUMENT, "`prefix_rows` is 0");
    EXPECT(fqgan_generate_completion(gen, &params, tokens, one - 1, 2, again, n, NULL, NULL, NULL),
           FQGAN_STATUS_INVALID_ARGUMENT, "`prefix_count` is 31");
    uint32_t bad_prefix[32];
    memcpy(bad_prefix, tokens, sizeof bad_prefix);
    bad_prefix[16 + 5] = 256;
    EXPECT(fqgan_generate_completion(gen, &params, bad_prefix, one, 2, again, n, NULL, NULL, NULL),
           FQGAN_STATUS_INVALID_ARGUMENT, "`prefix[21]` is 256 (sub-token 1, row 1, column 1)");
    bad_prefix[16 + 5] = tokens[16 + 5];
    bad_prefix[16 + 9] = 9999; /* below the kept rows: not read */
    EXPECT(fqgan_generate_completion(gen, &params, bad_prefix, one, 2, again, n, NULL, NULL, NULL), FQGAN_STATUS_OK,
           "");
    CHECK(memcmp(again, completed, n * sizeof *again) == 0);

    /* Bad parameters name the field. */
    fqgan_generate_params bad = params;
    EXPECT(fqgan_generate(NULL, &params, tokens, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "`generator` is null");
    bad.struct_size = 0;
    EXPECT(fqgan_generate(gen, &bad, again, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`params->struct_size` is 0");
    bad.struct_size = sizeof bad + 8; /* a newer header than this library */
    EXPECT(fqgan_generate(gen, &bad, again, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`params->struct_size`");
    bad.struct_size = (size_t)0x4141414141414141ull; /* garbage */
    EXPECT(fqgan_generate(gen, &bad, again, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`params->struct_size`");
    bad = params;
    bad.class_id = 10;
    EXPECT(fqgan_generate(gen, &bad, again, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "`params->class_id` is 10");
    bad = params;
    bad.top_p = 0.0f;
    EXPECT(fqgan_generate(gen, &bad, again, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`params->top_p` is 0");
    bad.top_p = 1.5f;
    EXPECT(fqgan_generate(gen, &bad, again, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`params->top_p` is 1.5");
    bad = params;
    bad.temperature = 0.0f;
    EXPECT(fqgan_generate(gen, &bad, again, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`params->temperature`");
    bad = params;
    bad.count = 0;
    EXPECT(fqgan_generate(gen, &bad, again, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`params->count` is 0");
    bad.count = UINT32_MAX; /* sizes are answered without allocating anything for the images */
    EXPECT(fqgan_generate(gen, &bad, NULL, 0, &required, NULL, NULL), FQGAN_STATUS_OK, "");
    CHECK(required == (size_t)UINT32_MAX * info.token_count);
    EXPECT(fqgan_generate(gen, &bad, again, n, NULL, NULL, NULL), FQGAN_STATUS_BUFFER_TOO_SMALL, "`tokens_capacity` is 64");
    EXPECT(fqgan_generate(gen, &params, again, n - 1, &required, NULL, NULL), FQGAN_STATUS_BUFFER_TOO_SMALL,
           "`tokens_capacity` is 63");
    CHECK(required == n);
    EXPECT(fqgan_generate(gen, &params, NULL, n, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`tokens` is null");

    /* Four threads share the generator and agree with one thread. */
    enum { THREADS = 4 };
    pthread_t threads[THREADS];
    struct job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (struct job){gen, &params, calloc(n, sizeof(uint32_t)), n, FQGAN_STATUS_OK};
        CHECK(pthread_create(&threads[i], NULL, generate_job, &jobs[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(jobs[i].status == FQGAN_STATUS_OK);
        CHECK(memcmp(jobs[i].tokens, tokens, n * sizeof *tokens) == 0);
        free(jobs[i].tokens);
    }

    /* Images: a mismatched tokenizer is refused; the images are the decoded tokens. */
    fqgan_tokenizer_info tok_info = {.struct_size = sizeof tok_info};
    EXPECT(fqgan_tokenizer_get_info(tok, &tok_info), FQGAN_STATUS_OK, "");
    const size_t bytes = 2 * tok_info.rgba_size;
    EXPECT(fqgan_generate_images(gen, tok, &params, NULL, 0, &required, NULL, NULL), FQGAN_STATUS_OK, "");
    CHECK(required == bytes);
    unsigned char *images = malloc(bytes), *decoded = malloc(tok_info.rgba_size);
    EXPECT(fqgan_generate_images(gen, other, &params, images, bytes, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "`tokenizer` does not match `generator`");
    EXPECT(fqgan_generate_images(gen, NULL, &params, images, bytes, NULL, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "`tokenizer` is null");
    EXPECT(fqgan_generate_images(gen, tok, &params, images, bytes - 1, NULL, NULL, NULL), FQGAN_STATUS_BUFFER_TOO_SMALL,
           "`rgba_capacity`");
    struct progress image_cancel = {0, 0, 0, 1, 1};
    EXPECT(fqgan_generate_images(gen, tok, &params, images, bytes, NULL, on_progress, &image_cancel),
           FQGAN_STATUS_CANCELLED, "cancelled");
    EXPECT(fqgan_generate_images(gen, tok, &params, images, bytes, NULL, NULL, NULL), FQGAN_STATUS_OK, "");
    EXPECT(fqgan_tokenizer_decode(tok, tokens + info.token_count, info.token_count, decoded, tok_info.rgba_size, NULL),
           FQGAN_STATUS_OK, "");
    CHECK(memcmp(decoded, images + tok_info.rgba_size, tok_info.rgba_size) == 0);

    /* .fqt: size query, write packed and range-coded, read back, refuse bad input. */
    size_t fqt_size = 0;
    EXPECT(fqgan_fqt_write(tok, NULL, tokens, info.token_count, NULL, 0, &fqt_size), FQGAN_STATUS_OK, "");
    unsigned char *packed = malloc(fqt_size);
    EXPECT(fqgan_fqt_write(tok, NULL, tokens, info.token_count, packed, fqt_size - 1, NULL),
           FQGAN_STATUS_BUFFER_TOO_SMALL, "`bytes_capacity`");
    EXPECT(fqgan_fqt_write(tok, NULL, tokens, info.token_count, packed, fqt_size, NULL), FQGAN_STATUS_OK, "");
    fqgan_fqt_write_params write = fqgan_fqt_write_params_default();
    CHECK(write.struct_size == sizeof write && write.width == 0 && write.coding == FQGAN_FQT_CODING_PACKED);
    write.coding = FQGAN_FQT_CODING_ENTROPY;
    size_t entropy_size = 0;
    EXPECT(fqgan_fqt_write(tok, &write, tokens, info.token_count, NULL, 0, &entropy_size), FQGAN_STATUS_OK, "");
    unsigned char *entropy = malloc(entropy_size);
    EXPECT(fqgan_fqt_write(tok, &write, tokens, info.token_count, entropy, entropy_size, NULL), FQGAN_STATUS_OK, "");
    write.coding = 5;
    EXPECT(fqgan_fqt_write(tok, &write, tokens, info.token_count, NULL, 0, &required), FQGAN_STATUS_INVALID_ARGUMENT,
           "`params->coding` is 5");
    write = fqgan_fqt_write_params_default();
    write.struct_size = 3;
    EXPECT(fqgan_fqt_write(tok, &write, tokens, info.token_count, NULL, 0, &required), FQGAN_STATUS_INVALID_ARGUMENT,
           "`params->struct_size` is 3");
    EXPECT(fqgan_fqt_write(tok, NULL, tokens, info.token_count - 1, NULL, 0, &required), FQGAN_STATUS_INVALID_ARGUMENT,
           "`token_count` is 31");
    memcpy(again, tokens, info.token_count * sizeof *again);
    again[20] = 256;
    EXPECT(fqgan_fqt_write(tok, NULL, again, info.token_count, NULL, 0, &required), FQGAN_STATUS_INVALID_ARGUMENT,
           "id 256");
    EXPECT(fqgan_fqt_write(NULL, NULL, tokens, info.token_count, NULL, 0, &required), FQGAN_STATUS_INVALID_ARGUMENT,
           "`tokenizer` is null");

    fqgan_fqt_info fqt = {.struct_size = sizeof fqt};
    memset(again, 0, n * sizeof *again);
    EXPECT(fqgan_fqt_read(tok, entropy, entropy_size, &fqt, NULL, 0, &required), FQGAN_STATUS_OK, "");
    CHECK(required == info.token_count);
    EXPECT(fqgan_fqt_read(tok, entropy, entropy_size, &fqt, again, info.token_count, NULL), FQGAN_STATUS_OK, "");
    CHECK(memcmp(again, tokens, info.token_count * sizeof *again) == 0);
    CHECK(fqt.struct_size == sizeof fqt && fqt.width == 64 && fqt.height == 64 && fqt.tile_size == 64);
    CHECK(fqt.tile_overlap == 0 && fqt.tiles_x == 1 && fqt.tiles_y == 1 && fqt.grid == 4 && fqt.codebook_count == 2);
    CHECK(fqt.codebook_sizes[0] == 256 && fqt.codebook_sizes[1] == 256 && fqt.codebook_sizes[2] == 0);
    CHECK(fqt.token_count == 32 && fqt.has_alpha == 0 && fqt.coding == FQGAN_FQT_CODING_ENTROPY);
    EXPECT(fqgan_fqt_read(NULL, packed, fqt_size, &fqt, again, info.token_count, NULL), FQGAN_STATUS_OK, "");
    CHECK(fqt.coding == FQGAN_FQT_CODING_PACKED && memcmp(again, tokens, info.token_count * sizeof *again) == 0);
    EXPECT(fqgan_fqt_read(other, packed, fqt_size, NULL, again, info.token_count, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "made by model");
    EXPECT(fqgan_fqt_read(tok, garbage, sizeof garbage, NULL, NULL, 0, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "truncated");
    unsigned char *broken = malloc(fqt_size);
    memcpy(broken, packed, fqt_size);
    memcpy(broken, "JUNK", 4);
    EXPECT(fqgan_fqt_read(tok, broken, fqt_size, NULL, NULL, 0, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "not a .fqt file");
    memcpy(broken, packed, fqt_size);
    broken[fqt_size / 2] ^= 0x10;
    EXPECT(fqgan_fqt_read(tok, broken, fqt_size, NULL, NULL, 0, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "checksum");
    EXPECT(fqgan_fqt_read(tok, packed, fqt_size - 1, NULL, NULL, 0, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`bytes`");
    EXPECT(fqgan_fqt_read(tok, packed, 0, NULL, NULL, 0, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`size` is 0");
    EXPECT(fqgan_fqt_read(tok, NULL, 10, NULL, NULL, 0, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`bytes` is null");
    EXPECT(fqgan_fqt_read(tok, packed, fqt_size, NULL, again, 31, NULL), FQGAN_STATUS_BUFFER_TOO_SMALL,
           "`tokens_capacity` is 31");
    fqt.struct_size = 1;
    EXPECT(fqgan_fqt_read(tok, packed, fqt_size, &fqt, NULL, 0, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "`info->struct_size` is 1");

    /* Larger images are tiles of the model's size: 100x64 in tiles of 64 overlapping by 8 is 2x1,
     * and the two generated images serve as its tiles. */
    fqgan_fqt_write_params wide = fqgan_fqt_write_params_default();
    wide.width = 100;
    wide.height = 64;
    wide.overlap = 8;
    size_t wide_size = 0;
    EXPECT(fqgan_fqt_write(tok, &wide, tokens, info.token_count, NULL, 0, &wide_size), FQGAN_STATUS_INVALID_ARGUMENT,
           "`token_count` is 32; a 100x64 image in 2 tiles of 32 ids needs 64");
    EXPECT(fqgan_fqt_write(tok, &wide, tokens, n, NULL, 0, &wide_size), FQGAN_STATUS_OK, "");
    unsigned char *tiled = malloc(wide_size);
    EXPECT(fqgan_fqt_write(tok, &wide, tokens, n, tiled, wide_size, NULL), FQGAN_STATUS_OK, "");
    fqt.struct_size = sizeof fqt;
    memset(again, 0, n * sizeof *again);
    EXPECT(fqgan_fqt_read(tok, tiled, wide_size, &fqt, again, n, NULL), FQGAN_STATUS_OK, "");
    CHECK(fqt.width == 100 && fqt.height == 64 && fqt.tile_overlap == 8 && fqt.tiles_x == 2 && fqt.tiles_y == 1);
    CHECK(fqt.token_count == n && memcmp(again, tokens, n * sizeof *again) == 0);
    wide.overlap = 32;
    EXPECT(fqgan_fqt_write(tok, &wide, tokens, n, NULL, 0, &wide_size), FQGAN_STATUS_INVALID_ARGUMENT,
           "`params->overlap` is 32");
    free(tiled);

    /* This generator's file stores no class names: its labels come back as text. */
    const char *label_name = NULL;
    CHECK(fqgan_generator_get_class_name(gen, 3, &label_name) == FQGAN_STATUS_OK && strcmp(label_name, "3") == 0);
    EXPECT(fqgan_generator_get_class_name(gen, 10, &label_name), FQGAN_STATUS_INVALID_ARGUMENT,
           "`label` is 10; this generator has 10 classes");
    EXPECT(fqgan_generator_get_class_name(gen, 0, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`name`");

    /* The built-in models: a matching pair, with named classes. */
    CHECK(fqgan_abi_minor_version() >= 2);
    fqgan_tokenizer *builtin_tok = (fqgan_tokenizer *)&failures;
    fqgan_generator *builtin_gen = NULL;
    EXPECT(fqgan_tokenizer_load_builtin(NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`out_tokenizer` is null");
    load.device = "tpu";
    EXPECT(fqgan_tokenizer_load_builtin(NULL, &builtin_tok), FQGAN_STATUS_OK, "");
    EXPECT(fqgan_generator_load_builtin(&load, &builtin_gen), FQGAN_STATUS_INVALID_ARGUMENT, "`params->device`");
    CHECK(builtin_gen == NULL);
    load.device = "cpu";
    EXPECT(fqgan_generator_load_builtin(&load, &builtin_gen), FQGAN_STATUS_OK, "");
    if (builtin_tok && builtin_gen) {
        fqgan_generator_info builtin = {.struct_size = sizeof builtin};
        CHECK(fqgan_generator_get_info(builtin_gen, &builtin) == FQGAN_STATUS_OK);
        CHECK(builtin.class_count == 10 && builtin.codebook_count == 2 && builtin.grid_width == 8);
        int has_nature = 0;
        for (uint32_t label = 0; label < builtin.class_count; label++) {
            const char *name = NULL;
            CHECK(fqgan_generator_get_class_name(builtin_gen, label, &name) == FQGAN_STATUS_OK && name && *name);
            has_nature |= name && strcmp(name, "nature") == 0;
        }
        CHECK(has_nature);
        fqgan_generate_params one = fqgan_generate_params_default();
        one.count = 1;
        size_t one_bytes = 0;
        EXPECT(fqgan_generate_images(builtin_gen, builtin_tok, &one, NULL, 0, &one_bytes, NULL, NULL), FQGAN_STATUS_OK, "");
        CHECK(one_bytes == 64 * 64 * 4);
        uint8_t *one_image = malloc(one_bytes);
        EXPECT(fqgan_generate_images(builtin_gen, builtin_tok, &one, one_image, one_bytes, NULL, NULL, NULL),
               FQGAN_STATUS_OK, "");
        /* bf16 weights (ABI minor 5): the same calls still work; bad values are refused. */
        CHECK(fqgan_abi_minor_version() >= 5);
        EXPECT(fqgan_generator_set_weight_precision(NULL, FQGAN_WEIGHT_PRECISION_BF16), FQGAN_STATUS_INVALID_ARGUMENT,
               "`generator` is null");
        EXPECT(fqgan_generator_set_weight_precision(builtin_gen, 7), FQGAN_STATUS_INVALID_ARGUMENT,
               "`precision` is 7; expected FQGAN_WEIGHT_PRECISION_F32 (0) or BF16 (1)");
        EXPECT(fqgan_generator_set_weight_precision(builtin_gen, FQGAN_WEIGHT_PRECISION_BF16), FQGAN_STATUS_OK, "");
        EXPECT(fqgan_generate_images(builtin_gen, builtin_tok, &one, one_image, one_bytes, NULL, NULL, NULL),
               FQGAN_STATUS_OK, "");
        EXPECT(fqgan_generator_set_weight_precision(builtin_gen, FQGAN_WEIGHT_PRECISION_F32), FQGAN_STATUS_OK, "");
        free(one_image);
        /* The test tokenizer does not decode the built-in generator's tokens. */
        EXPECT(fqgan_generate_images(builtin_gen, tok, &one, NULL, 0, &one_bytes, NULL, NULL),
               FQGAN_STATUS_INVALID_ARGUMENT, "");
    }
    fqgan_generator_free(builtin_gen);
    fqgan_tokenizer_free(builtin_tok);

    write_file(out_dir, "tokens.u32", tokens, n * sizeof *tokens);
    write_file(out_dir, "completed.u32", completed, n * sizeof *completed);
    write_file(out_dir, "images.rgba", images, bytes);
    write_file(out_dir, "packed.fqt", packed, fqt_size);
    write_file(out_dir, "entropy.fqt", entropy, entropy_size);

    fqgan_generator_free(gen);
    fqgan_tokenizer_free(tok);
    fqgan_tokenizer_free(other);
    free(tokens);
    free(again);
    free(completed);
    free(images);
    free(decoded);
    free(packed);
    free(entropy);
    free(broken);
    if (failures) fprintf(stderr, "%d checks failed\n", failures);
    else printf("generate_test: all checks passed\n");
    return failures ? 1 : 0;
}
