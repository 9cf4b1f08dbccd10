// Generates an image of a class with a FAR generator, decodes it with its tokenizer, and saves
// it as a binary PPM (P6) plus its tokens as a .fqt file, with the C++ wrapper
// bindings/cpp/fqgan.hpp, printing progress.
//
//   generate FAR.safetensors TOKENIZER.safetensors CLASS SEED OUT.ppm OUT.fqt [DEVICE]
//
// Build and run: see examples/cpp/README.md.
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "fqgan.hpp"

// Writes RGBA8 pixels as a P6 PPM (alpha dropped).
static void write_ppm(const std::string &path, const std::vector<std::uint8_t> &rgba, std::uint32_t width,
                      std::uint32_t height) {
    std::ofstream file(path, std::ios::binary);
    file << "P6\n" << width << ' ' << height << "\n255\n";
    for (std::size_t i = 0; i < rgba.size(); i += 4) file.write(reinterpret_cast<const char *>(&rgba[i]), 3);
    if (!file) throw std::runtime_error(path + ": cannot write");
}

int main(int argc, char **argv) {
    if (argc < 7) {
        std::cerr << "usage: " << argv[0] << " FAR.safetensors TOKENIZER.safetensors CLASS SEED OUT.ppm OUT.fqt [DEVICE]\n";
        return 2;
    }
    try {
        const std::string device = argc > 7 ? argv[7] : "cpu";
        const fqgan::Generator gen = fqgan::Generator::load_file(argv[1], device);
        const fqgan::Tokenizer tok = fqgan::Tokenizer::load_file(argv[2], device);
        const fqgan::GenerateParams params =
            fqgan::GenerateParams().class_id(std::uint32_t(std::stoul(argv[3]))).seed(std::stoull(argv[4]));

        // The tokens, then the image they decode to: the same as gen.generate_images(tok, params).
        const std::vector<std::uint32_t> tokens = gen.generate(params, [](std::uint32_t done, std::uint32_t total) {
            std::cerr << "\rtoken " << done << "/" << total << std::flush;
            return true;  // false would cancel (fqgan::Error with FQGAN_STATUS_CANCELLED)
        });
        std::cerr << "\n";
        const fqgan_tokenizer_info info = tok.info();
        write_ppm(argv[5], tok.decode(tokens), info.image_width, info.image_height);

        const std::vector<std::uint8_t> fqt = fqgan::fqt_write(tok, tokens);
        std::ofstream(argv[6], std::ios::binary).write(reinterpret_cast<const char *>(fqt.data()), fqt.size());
        std::cout << "class " << argv[3] << ", seed " << argv[4] << ": " << tokens.size() << " tokens -> " << argv[5]
                  << ", " << fqt.size() << " bytes -> " << argv[6] << "\n";
        return 0;
    } catch (const fqgan::Error &e) {
        std::cerr << "fqgan error " << e.status() << ": " << e.what() << "\n";
    } catch (const std::exception &e) {
        std::cerr << e.what() << "\n";
    }
    return 1;
}
