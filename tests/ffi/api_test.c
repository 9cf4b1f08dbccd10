/*
 * Exercises the C API through the built library; run by tests/ffi.rs.
 *
 *   api_test MODEL.safetensors IN.rgba OUT_DIR
 *
 * IN.rgba is the model's image size in packed RGBA8. Checks every bad-input path for its status
 * and message, that 8 threads sharing one handle agree with one thread, and writes
 * OUT_DIR/tokens.u32, OUT_DIR/decoded.rgba and OUT_DIR/decoded_0.rgba (sub-codebook 0 only) for
 * the Rust side to compare with its own API.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct job {
    const fqgan_tokenizer *tok;
    const fqgan_image *image;
    uint32_t *tokens;
    size_t count;
    fqgan_status status;
};

static void *encode_job(void *arg) {
    struct job *job = arg;
    for (int round = 0; round < 2 && job->status == FQGAN_STATUS_OK; round++)
        job->status = fqgan_tokenizer_encode(job->tok, job->image, job->tokens, job->count, NULL);
    return NULL;
}

/* Log lines, collected: how many, the highest level seen, and their text one after another. */
struct log_lines {
    int count;
    int max_level;
    char text[8192];
};

static void collect_log(void *user_data, int32_t level, const char *message) {
    struct log_lines *lines = user_data;
    lines->count++;
    if (level > lines->max_level) lines->max_level = level;
    size_t used = strlen(lines->text);
    snprintf(lines->text + used, sizeof lines->text - used, "%s\n", message);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.safetensors IN.rgba OUT_DIR\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1], *out_dir = argv[3];

    /* Version. */
    CHECK(fqgan_abi_version() == FQGAN_ABI_VERSION);
    CHECK(strlen(fqgan_version()) >= 5);
    CHECK(strcmp(fqgan_last_error(), "") == 0);
    CHECK(fqgan_abi_minor_version() == FQGAN_ABI_MINOR_VERSION);

    /* Threads: set once before the first load; another count afterwards is refused. */
    EXPECT(fqgan_set_num_threads(5000), FQGAN_STATUS_INVALID_ARGUMENT, "'5000'");
    CHECK(fqgan_set_num_threads(2) == FQGAN_STATUS_OK);
    CHECK(fqgan_get_num_threads() == 2);
    CHECK(fqgan_set_num_threads(2) == FQGAN_STATUS_OK);
    CHECK(fqgan_set_num_threads(0) == FQGAN_STATUS_OK);
    EXPECT(fqgan_set_num_threads(3), FQGAN_STATUS_INVALID_ARGUMENT, "already runs 2 threads");
    CHECK(fqgan_get_num_threads() == 2);

    /* Loading: every bad argument. */
    fqgan_tokenizer *tok = (fqgan_tokenizer *)&failures; /* must be reset to NULL on failure */
    EXPECT(fqgan_tokenizer_load_file(NULL, NULL, &tok), FQGAN_STATUS_INVALID_ARGUMENT, "`path` is null");
    CHECK(tok == NULL);
    EXPECT(fqgan_tokenizer_load_file(model_path, NULL, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`out_tokenizer` is null");
    EXPECT(fqgan_tokenizer_load_file("/nonexistent/model.safetensors", NULL, &tok), FQGAN_STATUS_IO,
           "/nonexistent/model.safetensors");
    fqgan_tokenizer_params params = fqgan_tokenizer_params_default();
    CHECK(params.struct_size == sizeof params && strcmp(params.device, "cpu") == 0);
    params.device = "tpu";
    EXPECT(fqgan_tokenizer_load_file(model_path, &params, &tok), FQGAN_STATUS_INVALID_ARGUMENT, "`params->device`");
    params.device = "cuda:0";
    fqgan_tokenizer *gpu = NULL; /* a CUDA build on a machine with a GPU: compared with the CPU below */
    fqgan_status cuda = fqgan_tokenizer_load_file(model_path, &params, &gpu);
    if (cuda != FQGAN_STATUS_OK) EXPECT(cuda, FQGAN_STATUS_DEVICE, "CUDA");
    params.struct_size = 0;
    EXPECT(fqgan_tokenizer_load_file(model_path, &params, &tok), FQGAN_STATUS_INVALID_ARGUMENT,
           "`params->struct_size` is 0");
    static const char garbage[] = "this is not a safetensors file at all";
    EXPECT(fqgan_tokenizer_load_memory(garbage, sizeof garbage, NULL, &tok), FQGAN_STATUS_INVALID_MODEL, "<memory>");
    EXPECT(fqgan_tokenizer_load_memory(garbage, 0, NULL, &tok), FQGAN_STATUS_INVALID_ARGUMENT, "`size` is 0");
    EXPECT(fqgan_tokenizer_load_memory(NULL, 10, NULL, &tok), FQGAN_STATUS_INVALID_ARGUMENT, "`data` is null");
    CHECK(tok == NULL);
    fqgan_tokenizer_free(NULL); /* a no-op */

    /* Load from memory, on the explicit CPU device. */
    size_t model_size = 0, input_size = 0;
    unsigned char *model = read_file(model_path, &model_size);
    unsigned char *rgba_in = read_file(argv[2], &input_size);
    if (!model || !rgba_in) {
        fprintf(stderr, "cannot read %s or %s\n", model_path, argv[2]);
        return 1;
    }
    params = fqgan_tokenizer_params_default();
    params.device = "ndarray";
    EXPECT(fqgan_tokenizer_load_memory(model, model_size, &params, &tok), FQGAN_STATUS_OK, "");
    fqgan_tokenizer_free(tok);

    /* Loads report every tensor read and stop when asked (ABI minor 4). */
    struct progress loading = {0, 0, 0, 0, 1}, stopping = {0, 0, 0, 3, 1};
    EXPECT(fqgan_tokenizer_load_memory_with_progress(model, model_size, &params, on_progress, &loading, &tok),
           FQGAN_STATUS_OK, "");
    CHECK(tok != NULL && loading.in_order && loading.calls == loading.total && loading.total > 10);
    fqgan_tokenizer_free(tok);
    tok = (fqgan_tokenizer *)&failures;
    EXPECT(fqgan_tokenizer_load_file_with_progress(model_path, NULL, on_progress, &stopping, &tok),
           FQGAN_STATUS_CANCELLED, "cancelled");
    CHECK(tok == NULL && stopping.calls == 3);
    EXPECT(fqgan_tokenizer_load_file_with_progress(model_path, NULL, NULL, NULL, &tok), FQGAN_STATUS_OK, "");
    fqgan_tokenizer_free(tok);

    /* Devices, "auto" and the log (ABI minor 3): silent by default, then up to the level asked. */
    CHECK(fqgan_device_count() >= 2);
    const char *name = NULL;
    EXPECT(fqgan_device_name(0, &name), FQGAN_STATUS_OK, "");
    CHECK(name && strcmp(name, "cpu") == 0);
    EXPECT(fqgan_device_name(1, &name), FQGAN_STATUS_OK, "");
    CHECK(name && strcmp(name, "ndarray") == 0);
    EXPECT(fqgan_device_name(fqgan_device_count(), &name), FQGAN_STATUS_INVALID_ARGUMENT, "`index`");
    EXPECT(fqgan_device_name(0, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`name` is null");
    const int has_cuda = fqgan_device_count() > 2;
    struct log_lines lines = {0};
    EXPECT(fqgan_set_log_callback(collect_log, 9, &lines), FQGAN_STATUS_INVALID_ARGUMENT, "`max_level` is 9");
    params.device = "auto";
    EXPECT(fqgan_tokenizer_load_memory(model, model_size, &params, &tok), FQGAN_STATUS_OK, "");
    fqgan_tokenizer_free(tok);
    CHECK(lines.count == 0);
    EXPECT(fqgan_set_log_callback(collect_log, FQGAN_LOG_LEVEL_WARN, &lines), FQGAN_STATUS_OK, "");
    EXPECT(fqgan_tokenizer_load_memory(model, model_size, &params, &tok), FQGAN_STATUS_OK, "");
    fqgan_tokenizer_free(tok);
    CHECK(lines.count == 0); /* loads and the device choice are info */
    EXPECT(fqgan_set_log_callback(collect_log, FQGAN_LOG_LEVEL_INFO, &lines), FQGAN_STATUS_OK, "");
    EXPECT(fqgan_tokenizer_load_memory(model, model_size, &params, &tok), FQGAN_STATUS_OK, "");
    fqgan_tokenizer_info auto_info = {.struct_size = sizeof auto_info};
    EXPECT(fqgan_tokenizer_get_info(tok, &auto_info), FQGAN_STATUS_OK, "");
    CHECK(strcmp(auto_info.device, has_cuda ? "cuda:0" : "cpu") == 0);
    fqgan_tokenizer_free(tok);
    CHECK(has_cuda || (lines.count >= 1 && strstr(lines.text, "device \"auto\" uses the CPU: ") != NULL));
    CHECK(lines.count >= 1 && strstr(lines.text, "loaded a tokenizer from") != NULL && lines.max_level == FQGAN_LOG_LEVEL_INFO);
    EXPECT(fqgan_set_log_callback(NULL, 0, NULL), FQGAN_STATUS_OK, "");
    const int before = lines.count;
    EXPECT(fqgan_tokenizer_load_memory(model, model_size, &params, &tok), FQGAN_STATUS_OK, "");
    fqgan_tokenizer_free(tok);
    CHECK(lines.count == before);
    params.device = "cpu";
    EXPECT(fqgan_tokenizer_load_memory(model, model_size, &params, &tok), FQGAN_STATUS_OK, "");
    free(model);
    if (!tok) return 1;

    /* Info. */
    fqgan_tokenizer_info info = {.struct_size = 0};
    EXPECT(fqgan_tokenizer_get_info(tok, &info), FQGAN_STATUS_INVALID_ARGUMENT, "`info->struct_size` is 0");
    EXPECT(fqgan_tokenizer_get_info(NULL, &info), FQGAN_STATUS_INVALID_ARGUMENT, "`tokenizer` is null");
    info.struct_size = sizeof info;
    EXPECT(fqgan_tokenizer_get_info(tok, &info), FQGAN_STATUS_OK, "");
    CHECK(info.struct_size == sizeof info);
    CHECK(info.codebook_count == 2 && info.image_width == 64 && info.image_height == 64);
    CHECK(info.grid_width == 8 && info.grid_height == 8 && info.downsample == 8);
    CHECK(info.token_count == 2 * 8 * 8 && info.rgba_size == 64 * 64 * 4 && input_size == info.rgba_size);
    CHECK(strcmp(info.device, "cpu") == 0);
    fqgan_codebook_info codebook = {.struct_size = sizeof codebook};
    EXPECT(fqgan_tokenizer_get_codebook(tok, 1, &codebook), FQGAN_STATUS_OK, "");
    CHECK(strcmp(codebook.name, "sem") == 0 && codebook.size == 1024 && codebook.dim > 0);
    EXPECT(fqgan_tokenizer_get_codebook(tok, 2, &codebook), FQGAN_STATUS_INVALID_ARGUMENT, "`index` is 2");

    /* Encoding: size query, bad arguments, then the real thing in RGBA8 and padded RGB8. */
    const size_t n = info.token_count, side = info.image_width;
    uint32_t *tokens = calloc(n, sizeof *tokens), *other = calloc(n, sizeof *other);
    size_t required = 0;
    EXPECT(fqgan_tokenizer_encode(tok, NULL, NULL, 0, &required), FQGAN_STATUS_OK, "");
    CHECK(required == n);
    fqgan_image image = {rgba_in, (uint32_t)side, (uint32_t)side, side * 4, FQGAN_PIXEL_FORMAT_RGBA8};
    EXPECT(fqgan_tokenizer_encode(NULL, &image, tokens, n, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`tokenizer` is null");
    EXPECT(fqgan_tokenizer_encode(tok, NULL, tokens, n, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`image` is null");
    EXPECT(fqgan_tokenizer_encode(tok, &image, NULL, n, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`tokens` is null");
    required = 0;
    EXPECT(fqgan_tokenizer_encode(tok, &image, tokens, n - 1, &required), FQGAN_STATUS_BUFFER_TOO_SMALL,
           "`tokens_capacity` is 127");
    CHECK(required == n);
    EXPECT(fqgan_tokenizer_encode(tok, &image, (uint32_t *)((char *)tokens + 1), n, NULL),
           FQGAN_STATUS_INVALID_ARGUMENT, "`tokens`");
    fqgan_image bad = image;
    bad.width = 32;
    EXPECT(fqgan_tokenizer_encode(tok, &bad, tokens, n, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "32x64");
    bad = image;
    bad.height = 0;
    EXPECT(fqgan_tokenizer_encode(tok, &bad, tokens, n, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "empty");
    bad = image;
    bad.stride = side * 4 - 1;
    EXPECT(fqgan_tokenizer_encode(tok, &bad, tokens, n, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`image->stride`");
    bad = image;
    bad.format = 7;
    EXPECT(fqgan_tokenizer_encode(tok, &bad, tokens, n, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`image->format` is 7");
    bad = image;
    bad.pixels = NULL;
    EXPECT(fqgan_tokenizer_encode(tok, &bad, tokens, n, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`image->pixels` is null");

    EXPECT(fqgan_tokenizer_encode(tok, &image, tokens, n, NULL), FQGAN_STATUS_OK, "");
    const size_t stride = side * 3 + 5; /* RGB8 rows with padding */
    unsigned char *rgb = calloc(stride * side, 1);
    for (size_t y = 0; y < side; y++)
        for (size_t x = 0; x < side; x++) memcpy(rgb + y * stride + x * 3, rgba_in + (y * side + x) * 4, 3);
    fqgan_image padded = {rgb, (uint32_t)side, (uint32_t)side, stride, FQGAN_PIXEL_FORMAT_RGB8};
    EXPECT(fqgan_tokenizer_encode(tok, &padded, other, n, NULL), FQGAN_STATUS_OK, "");
    CHECK(memcmp(tokens, other, n * sizeof *tokens) == 0);
    if (gpu) {
        /* Float sums in another order may flip a near tie between two codes, no more. */
        EXPECT(fqgan_tokenizer_encode(gpu, &image, other, n, NULL), FQGAN_STATUS_OK, "");
        size_t same = 0;
        for (size_t i = 0; i < n; i++) same += tokens[i] == other[i];
        CHECK(same * 100 >= n * 95);
        fqgan_tokenizer_free(gpu);
    }

    /* Eight threads share the handle; each must get the single-threaded result. */
    enum { THREADS = 8 };
    pthread_t threads[THREADS];
    struct job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (struct job){tok, i % 2 ? &image : &padded, calloc(n, sizeof(uint32_t)), n, FQGAN_STATUS_OK};
        CHECK(pthread_create(&threads[i], NULL, encode_job, &jobs[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(jobs[i].status == FQGAN_STATUS_OK);
        CHECK(memcmp(jobs[i].tokens, tokens, n * sizeof *tokens) == 0);
        free(jobs[i].tokens);
    }

    /* Decoding: size query, bad arguments, full and subset. */
    const size_t bytes = info.rgba_size;
    unsigned char *decoded = malloc(bytes), *decoded_0 = malloc(bytes);
    EXPECT(fqgan_tokenizer_decode(tok, NULL, 0, NULL, 0, &required), FQGAN_STATUS_OK, "");
    CHECK(required == bytes);
    EXPECT(fqgan_tokenizer_decode(tok, tokens, n, decoded, bytes - 1, NULL), FQGAN_STATUS_BUFFER_TOO_SMALL,
           "`rgba_capacity`");
    EXPECT(fqgan_tokenizer_decode(tok, tokens, n - 1, decoded, bytes, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "`token_count` is 127");
    EXPECT(fqgan_tokenizer_decode(tok, NULL, n, decoded, bytes, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "`tokens` is null");
    memcpy(other, tokens, n * sizeof *other);
    other[64 + 9] = 1024; /* sub-codebook 1, row 1, column 1: one past the end */
    EXPECT(fqgan_tokenizer_decode(tok, other, n, decoded, bytes, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "`tokens[73]` is 1024 (sub-codebook 1 'sem', row 1, column 1)");
    other[64 + 9] = 0xFFFFFFFFu;
    EXPECT(fqgan_tokenizer_decode(tok, other, n, decoded, bytes, NULL), FQGAN_STATUS_INVALID_ARGUMENT, "4294967295");
    const uint32_t first[] = {0}, wrong[] = {0, 2};
    EXPECT(fqgan_tokenizer_decode_subset(tok, tokens, n, wrong, 2, decoded, bytes, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "`codebooks[1]` is 2");
    EXPECT(fqgan_tokenizer_decode_subset(tok, tokens, n, first, 0, decoded, bytes, NULL), FQGAN_STATUS_INVALID_ARGUMENT,
           "`codebook_count` is 0");

    EXPECT(fqgan_tokenizer_decode(tok, tokens, n, decoded, bytes, NULL), FQGAN_STATUS_OK, "");
    EXPECT(fqgan_tokenizer_decode_subset(tok, tokens, n, first, 1, decoded_0, bytes, NULL), FQGAN_STATUS_OK, "");
    CHECK(memcmp(decoded, decoded_0, bytes) != 0);
    for (size_t i = 3; i < bytes; i += 4) CHECK(decoded[i] == 255);

    write_file(out_dir, "tokens.u32", tokens, n * sizeof *tokens);
    write_file(out_dir, "decoded.rgba", decoded, bytes);
    write_file(out_dir, "decoded_0.rgba", decoded_0, bytes);

    fqgan_tokenizer_free(tok);
    free(decoded);
    free(decoded_0);
    free(rgb);
    free(tokens);
    free(other);
    free(rgba_in);
    if (failures) fprintf(stderr, "%d checks failed\n", failures);
    else printf("api_test: all checks passed\n");
    return failures ? 1 : 0;
}
