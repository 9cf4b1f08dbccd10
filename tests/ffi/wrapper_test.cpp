// Exercises bindings/cpp/fqgan.hpp; run by tests/ffi.rs.
//
//   wrapper_test MODEL.safetensors IN.rgba
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"

static std::vector<std::uint8_t> read_file(const std::string &path) {
    std::ifstream file(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

int main(int argc, char **argv) {
    if (argc != 3) {
        std::cerr << "usage: " << argv[0] << " MODEL.safetensors IN.rgba\n";
        return 2;
    }
    CHECK(fqgan::abi_version() == FQGAN_ABI_VERSION);
    CHECK(!fqgan::version().empty());

    EXPECT_ERROR(FQGAN_STATUS_IO, "missing.safetensors", fqgan::Tokenizer::load_file("missing.safetensors"));
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "`params->device`", fqgan::Tokenizer::load_file(argv[1], "gpu"));
    const std::vector<std::uint8_t> garbage(100, 7);
    EXPECT_ERROR(FQGAN_STATUS_INVALID_MODEL, "not a valid safetensors", fqgan::Tokenizer::load_memory(garbage));

    const std::vector<std::uint8_t> model = read_file(argv[1]);
    // Loads report the tensors read; a progress that returns false cancels (ABI minor 4).
    std::uint32_t reported = 0, tensors = 0;
    fqgan::Tokenizer::load_memory(model, "cpu", [&](std::uint32_t done, std::uint32_t total) {
        reported = done;
        tensors = total;
        return true;
    });
    CHECK(tensors > 10 && reported == tensors);
    EXPECT_ERROR(FQGAN_STATUS_CANCELLED, "cancelled",
                 fqgan::Tokenizer::load_file(argv[1], "cpu", [](std::uint32_t, std::uint32_t) { return false; }));
    fqgan::Tokenizer loaded = fqgan::Tokenizer::load_memory(model);
    fqgan::Tokenizer tok = std::move(loaded);  // move-only: `loaded` is now empty
    CHECK(loaded.get() == nullptr && tok.get() != nullptr);
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "`tokenizer` is null", loaded.info());

    const fqgan_tokenizer_info info = tok.info();
    const std::vector<fqgan::Codebook> codebooks = tok.codebooks();
    CHECK(codebooks.size() == 2 && codebooks[0].name == "vis" && codebooks[1].name == "sem");
    CHECK(codebooks[0].size == 1024);

    const std::vector<std::uint8_t> rgba = read_file(argv[2]);
    CHECK(rgba.size() == info.rgba_size);
    const fqgan::ImageView image = fqgan::ImageView::rgba(rgba.data(), info.image_width, info.image_height);
    const std::vector<std::uint32_t> tokens = tok.encode(image);
    CHECK(tokens.size() == info.token_count);

    std::vector<std::uint32_t> short_buffer(tokens.size() - 1);
    EXPECT_ERROR(FQGAN_STATUS_BUFFER_TOO_SMALL, "`tokens_capacity`", tok.encode(image, short_buffer));
    const fqgan::ImageView small = fqgan::ImageView::rgba(rgba.data(), 16, 16);
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "16x16", tok.encode(small));
    std::vector<std::uint32_t> bad_tokens = tokens;
    bad_tokens[0] = 5000;
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "`tokens[0]` is 5000", tok.decode(bad_tokens));
    const std::uint32_t no_such_codebook[] = {3};
    EXPECT_ERROR(FQGAN_STATUS_INVALID_ARGUMENT, "`codebooks[0]` is 3", tok.decode_subset(tokens, no_such_codebook));

    // Span overloads write into caller memory and agree with the vector overloads.
    std::uint32_t raw[2 * 8 * 8];
    tok.encode(image, raw);
    CHECK(std::memcmp(raw, tokens.data(), sizeof raw) == 0);
    const std::vector<std::uint8_t> decoded = tok.decode(tokens);
    std::vector<std::uint8_t> into(info.rgba_size);
    tok.decode(tokens, into);
    CHECK(decoded == into && decoded.size() == info.rgba_size);
    const std::uint32_t both[] = {0, 1};
    CHECK(tok.decode_subset(tokens, both) == decoded);

    // Whole images (ABI minor 3): a 100x90 RGBA image made of the input, with a real alpha
    // plane, through the wrapper and through the C calls, field by field.
    const std::uint32_t width = 100, height = 90;
    std::vector<std::uint8_t> big(std::size_t(width) * height * 4);
    for (std::uint32_t y = 0; y < height; y++)
        for (std::uint32_t x = 0; x < width; x++) {
            std::uint8_t *pixel = &big[(std::size_t(y) * width + x) * 4];
            std::memcpy(pixel, &rgba[(std::size_t(y % 64) * 64 + x % 64) * 4], 3);
            pixel[3] = std::uint8_t(x < 50 ? 255 : y * 2);
        }
    const fqgan::ImageView big_view = fqgan::ImageView::rgba(big.data(), width, height);
    fqgan_fqt_image_params params = fqgan_fqt_image_params_default();
    params.bottom_up = 1;
    params.coding = FQGAN_FQT_CODING_PACKED;
    std::vector<std::uint32_t> tiles_done;
    const std::vector<std::uint8_t> fqt = fqgan::fqt_encode_image(tok, big_view, params, [&](std::uint32_t done, std::uint32_t) {
        tiles_done.push_back(done);
        return true;
    });
    const fqgan_image c_view = {big.data(), width, height, std::size_t(width) * 4, FQGAN_PIXEL_FORMAT_RGBA8};
    fqgan_fqt_image_params c_params = fqgan_fqt_image_params_default();
    c_params.bottom_up = 1;
    c_params.coding = 0;
    std::size_t bound = 0, size = 0;
    CHECK(fqgan_fqt_encode_image(tok.get(), &c_view, &c_params, nullptr, nullptr, nullptr, 0, &bound) == FQGAN_STATUS_OK);
    std::vector<std::uint8_t> from_c(bound);
    CHECK(fqgan_fqt_encode_image(tok.get(), &c_view, &c_params, nullptr, nullptr, from_c.data(), bound, &size) ==
          FQGAN_STATUS_OK);
    from_c.resize(size);
    CHECK(fqt == from_c && !tiles_done.empty());
    const fqgan::Rgba8Image whole = fqgan::fqt_decode_image(tok, fqt, params);
    std::vector<std::uint8_t> whole_c(std::size_t(width) * height * 4);
    CHECK(fqgan_fqt_decode_image(tok.get(), fqt.data(), fqt.size(), &c_params, nullptr, nullptr, whole_c.data(),
                                 whole_c.size(), nullptr) == FQGAN_STATUS_OK);
    CHECK(whole.width == width && whole.height == height && whole.pixels == whole_c);
    // Alpha is lossless, and bottom-up rows both ways leave every row where it was.
    bool alpha_kept = true;
    for (std::size_t i = 3; i < big.size(); i += 4) alpha_kept = alpha_kept && whole.pixels[i] == big[i];
    CHECK(alpha_kept);
    EXPECT_ERROR(FQGAN_STATUS_CANCELLED, "cancelled",
                 fqgan::fqt_decode_image(tok, fqt, params, [](std::uint32_t, std::uint32_t) { return false; }));

    // Devices, "auto" and the log (ABI minor 3).
    const std::vector<std::string> devices = fqgan::devices();
    CHECK(devices.size() >= 2 && devices[0] == "cpu" && devices[1] == "ndarray");
    std::vector<std::string> logged;
    fqgan::set_log([&](fqgan_log_level level, const std::string &message) {
        if (level <= FQGAN_LOG_LEVEL_INFO) logged.push_back(message);
        if (message.empty()) throw std::runtime_error("a throwing sink must not take the library down");
    });
    const fqgan::Tokenizer automatic = fqgan::Tokenizer::load_file(argv[1], "auto");
    fqgan::set_log(nullptr);
    CHECK(!logged.empty() && logged.back().find("loaded a tokenizer from") != std::string::npos);
    const std::size_t seen = logged.size();
    fqgan::Tokenizer::load_file(argv[1], "auto");
    CHECK(logged.size() == seen);

    // A const handle shared by threads; exceptions stay on the thread that caused them.
    std::vector<std::vector<std::uint32_t>> results(8);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < results.size(); i++)
        threads.emplace_back([&, i] { results[i] = tok.encode(image); });
    for (std::thread &thread : threads) thread.join();
    for (const std::vector<std::uint32_t> &result : results) CHECK(result == tokens);

    if (failures) std::cerr << failures << " checks failed\n";
    else std::cout << "wrapper_test: all checks passed\n";
    return failures ? 1 : 0;
}
