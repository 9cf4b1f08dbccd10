// Encodes a binary PPM (P6) image into FQGAN token grids and decodes it back, with the C++
// wrapper bindings/cpp/fqgan.hpp.
//
//   encode_decode MODEL.safetensors IN.ppm OUT.ppm [DEVICE] [CODEBOOK...]
//
// With CODEBOOK indices (e.g. 0 for the visual sub-codebook), decodes with only those.
// Build and run: see examples/cpp/README.md.
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "fqgan.hpp"

struct Picture {
    std::uint32_t width = 0, height = 0;
    std::vector<std::uint8_t> rgb;
};

// Reads a P6 PPM with maxval 255.
static Picture read_ppm(const std::string &path) {
    std::ifstream file(path, std::ios::binary);
    std::string magic;
    unsigned maxval = 0;
    Picture picture;
    file >> magic >> picture.width >> picture.height >> maxval;
    file.get();
    if (!file || magic != "P6" || maxval != 255) throw std::runtime_error(path + ": not a binary PPM (P6, maxval 255)");
    picture.rgb.resize(std::size_t(picture.width) * picture.height * 3);
    if (!file.read(reinterpret_cast<char *>(picture.rgb.data()), picture.rgb.size()))
        throw std::runtime_error(path + ": truncated");
    return picture;
}

// Writes RGBA8 pixels as a P6 PPM (alpha dropped).
static void write_ppm(const std::string &path, const std::vector<std::uint8_t> &rgba, std::uint32_t width,
                      std::uint32_t height) {
    std::ofstream file(path, std::ios::binary);
    file << "P6\n" << width << ' ' << height << "\n255\n";
    for (std::size_t i = 0; i < rgba.size(); i += 4) file.write(reinterpret_cast<const char *>(&rgba[i]), 3);
    if (!file) throw std::runtime_error(path + ": cannot write");
}

int main(int argc, char **argv) {
    if (argc < 4) {
        std::cerr << "usage: " << argv[0] << " MODEL.safetensors IN.ppm OUT.ppm [cpu|ndarray|cuda:N] [CODEBOOK...]\n";
        return 2;
    }
    try {
        if (fqgan::abi_version() != FQGAN_ABI_VERSION) throw std::runtime_error("libfqgan has another ABI version");
        const fqgan::Tokenizer tok = fqgan::Tokenizer::load_file(argv[1], argc > 4 ? argv[4] : "cpu");
        const fqgan_tokenizer_info info = tok.info();
        for (const fqgan::Codebook &codebook : tok.codebooks())
            std::cout << "sub-codebook " << codebook.name << ": " << codebook.size << " entries of " << codebook.dim
                      << "\n";

        const Picture picture = read_ppm(argv[2]);
        const std::vector<std::uint32_t> tokens =
            tok.encode(fqgan::ImageView::rgb(picture.rgb.data(), picture.width, picture.height));

        std::vector<std::uint32_t> which;
        for (int i = 5; i < argc; i++) which.push_back(std::uint32_t(std::stoul(argv[i])));
        const std::vector<std::uint8_t> rgba = which.empty() ? tok.decode(tokens) : tok.decode_subset(tokens, which);
        write_ppm(argv[3], rgba, info.image_width, info.image_height);
        std::cout << tokens.size() << " tokens -> " << argv[3] << "\n";
        return 0;
    } catch (const fqgan::Error &e) {
        std::cerr << "fqgan error " << e.status() << ": " << e.what() << "\n";
    } catch (const std::exception &e) {
        std::cerr << e.what() << "\n";
    }
    return 1;
}
