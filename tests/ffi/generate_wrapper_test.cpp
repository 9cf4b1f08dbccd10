// Exercises generation and .fqt files through bindings/cpp/fqgan.hpp; run by tests/ffi.rs.
//
//   generate_wrapper_test FAR.safetensors TOKENIZER.safetensors OTHER_TOKENIZER.safetensors
//
// The same pair and parameters as tests/ffi/generate_test.c (class 3, 2 images, seed 7,
// top_p 0.9); the C test compares the results with the Rust API, this one with the C calls.
#include <algorithm>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"

int main(int argc, char **argv) {
    if (argc != 4) {
        std::cerr << "usage: " << argv[0] << " FAR TOKENIZER OTHER_TOKENIZER\n";
        return 2;
    }
    EXPECT_ERROR(FQGAN_STATUS_IO, "missing.safetensors", fqgan::Generator::load_file("missing.safetensors"));
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "`params->device`", fqgan::Generator::load_file(argv[1], "gpu"));

    fqgan::Generator loaded = fqgan::Generator::load_file(argv[1]);
    const fqgan::Generator gen = std::move(loaded);
    CHECK(loaded.get() == nullptr && gen.get() != nullptr);
    const fqgan::Tokenizer tok = fqgan::Tokenizer::load_file(argv[2]);
    const fqgan::Tokenizer other = fqgan::Tokenizer::load_file(argv[3]);
    const fqgan_generator_info info = gen.info();
    CHECK(info.class_count == 10 && info.token_count == 32);
    CHECK(gen.vocab_sizes() == std::vector<std::uint32_t>({256, 256}));

    const fqgan::GenerateParams params = fqgan::GenerateParams().class_id(3).count(2).seed(7).top_p(0.9f);
    std::vector<std::uint32_t> calls;
    const std::vector<std::uint32_t> tokens = gen.generate(params, [&](std::uint32_t done, std::uint32_t total) {
        calls.push_back(done);
        return total == 16;
    });
    CHECK(calls.size() == 16 && calls.front() == 1 && calls.back() == 16);

    // The wrapper passes every parameter through unchanged: a C struct filled in here, field by
    // field, gives the same tokens, for the parameters above and for non-default sampling.
    fqgan_generate_params c = fqgan_generate_params_default();
    c.class_id = 3;
    c.count = 2;
    c.seed = 7;
    c.top_p = 0.9f;
    std::vector<std::uint32_t> from_c(tokens.size());
    CHECK(fqgan_generate(gen.get(), &c, from_c.data(), from_c.size(), nullptr, nullptr, nullptr) == FQGAN_STATUS_OK);
    CHECK(from_c == tokens);
    const fqgan::GenerateParams sampled =
        fqgan::GenerateParams().class_id(5).count(2).seed(11).temperature(1.7f).top_k(9).top_p(0.8f);
    c.class_id = 5;
    c.seed = 11;
    c.temperature = 1.7f;
    c.top_k = 9;
    c.top_p = 0.8f;
    CHECK(fqgan_generate(gen.get(), &c, from_c.data(), from_c.size(), nullptr, nullptr, nullptr) == FQGAN_STATUS_OK);
    CHECK(gen.generate(sampled) == from_c);
    CHECK(from_c != tokens);

    // Prefix completion: the wrapper against the C call, and the kept rows really kept.
    const std::vector<std::uint32_t> prefix(tokens.begin(), tokens.begin() + 32);
    const std::vector<std::uint32_t> completed = gen.complete(params, prefix, 2);
    std::vector<std::uint32_t> completed_c(tokens.size());
    c = fqgan_generate_params_default();
    c.class_id = 3;
    c.count = 2;
    c.seed = 7;
    c.top_p = 0.9f;
    CHECK(fqgan_generate_completion(gen.get(), &c, prefix.data(), prefix.size(), 2, completed_c.data(),
                                    completed_c.size(), nullptr, nullptr, nullptr) == FQGAN_STATUS_OK);
    CHECK(completed == completed_c);
    CHECK(std::equal(prefix.begin(), prefix.begin() + 8, completed.begin() + 32));
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "`prefix_rows` is 0", gen.complete(params, prefix, 0));

    // Cancelling by returning false, and by throwing: the exception comes back unchanged.
    EXPECT_ERROR(FQGAN_STATUS_CANCELLED, "cancelled", gen.generate(params, [](std::uint32_t done, std::uint32_t) {
        return done < 3;
    }));
    try {
        gen.generate(params, [](std::uint32_t, std::uint32_t) -> bool { throw std::runtime_error("from the callback"); });
        CHECK(false);
    } catch (const std::runtime_error &e) {
        CHECK(std::string(e.what()) == "from the callback");
    }

    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "`params->class_id` is 12",
                 gen.generate(fqgan::GenerateParams().class_id(12)));
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "`params->top_p` is 2", gen.generate(fqgan::GenerateParams().top_p(2)));
    std::vector<std::uint32_t> short_buffer(tokens.size() - 1);
    EXPECT_ERROR(FQGAN_STATUS_BUFFER_TOO_SMALL, "`tokens_capacity`", gen.generate(params, short_buffer));
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "does not match", gen.generate_images(other, params));

    // Images are the decoded tokens, image after image.
    const std::vector<std::uint8_t> images = gen.generate_images(tok, params);
    const std::size_t image_size = tok.info().rgba_size;
    CHECK(images.size() == 2 * image_size);
    const std::vector<std::uint32_t> second(tokens.begin() + 32, tokens.end());
    CHECK(std::memcmp(tok.decode(second).data(), images.data() + image_size, image_size) == 0);

    // .fqt round trip, and a file from another model refused.
    const std::vector<std::uint32_t> first(tokens.begin(), tokens.begin() + 32);
    for (fqgan_fqt_coding coding : {FQGAN_FQT_CODING_PACKED, FQGAN_FQT_CODING_ENTROPY}) {
        const std::vector<std::uint8_t> bytes = fqgan::fqt_write(tok, first, coding);
        const fqgan::FqtFile file = fqgan::fqt_read(bytes, &tok);
        CHECK(file.tokens == first && file.info.coding == coding && file.info.width == 64);
        EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "made by model", fqgan::fqt_read(bytes, &other));
        CHECK(fqgan::fqt_read(bytes).tokens == first);
    }
    const std::vector<std::uint8_t> junk(80, 1);
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "not a .fqt file", fqgan::fqt_read(junk));

    // The built-in pair: named classes, and the built-in tokenizer decodes the generator's tokens.
    const std::vector<std::string> unnamed = gen.class_names();
    CHECK(unnamed.size() == 10 && unnamed[3] == "3");
    fqgan::Generator builtin = fqgan::Generator::load_builtin();
    const std::vector<std::string> names = builtin.class_names();
    CHECK(names.size() == 10 && std::find(names.begin(), names.end(), "nature") != names.end());
    const fqgan::Tokenizer builtin_tok = fqgan::Tokenizer::load_builtin();
    CHECK(builtin.generate_images(builtin_tok, fqgan::GenerateParams().count(1)).size() == 64 * 64 * 4);
    builtin.set_weight_precision(FQGAN_WEIGHT_PRECISION_BF16);
    CHECK(builtin.generate_images(builtin_tok, fqgan::GenerateParams().count(1)).size() == 64 * 64 * 4);
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "`precision` is 9",
                 builtin.set_weight_precision(static_cast<fqgan_weight_precision>(9)));

    if (failures) std::cerr << failures << " checks failed\n";
    else std::cout << "generate_wrapper_test: all checks passed\n";
    return failures ? 1 : 0;
}
