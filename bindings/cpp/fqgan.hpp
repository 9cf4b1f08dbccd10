// fqgan.hpp: header-only C++17 wrapper over the C API in fqgan.h.
//
// - Handles are move-only RAII objects: the destructor frees them.
// - Failures throw fqgan::Error, which carries the fqgan_status and fqgan_last_error()'s message.
// - Buffers are passed as fqgan::Span (pointer + size; std::span is C++20), so std::vector,
//   std::array and raw memory all work; convenience overloads return std::vector.
// - A const Tokenizer may be used from many threads at once, like the C handle.
//
//   fqgan::Tokenizer tok = fqgan::Tokenizer::load_file("tok.safetensors", "cpu");
//   std::vector<uint32_t> tokens = tok.encode(fqgan::ImageView::rgba(pixels, 256, 256));
//   std::vector<uint8_t> rgba = tok.decode(tokens);
#ifndef FQGAN_HPP
#define FQGAN_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fqgan.h"

namespace fqgan {

/// A failed call: what fqgan_last_error() said, plus the status code.
class Error : public std::runtime_error {
public:
    Error(fqgan_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
    fqgan_status status() const noexcept { return status_; }

private:
    fqgan_status status_;
};

namespace detail {
inline void check(fqgan_status status) {
    if (status != FQGAN_STATUS_OK) throw Error(status, fqgan_last_error());
}
}  // namespace detail

/// A non-owning view of contiguous elements (a minimal std::span for C++17).
template <class T>
class Span {
public:
    constexpr Span() noexcept = default;
    constexpr Span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}
    template <class Container, class = decltype(std::declval<Container &>().data())>
    constexpr Span(Container &container) noexcept : data_(container.data()), size_(container.size()) {}
    template <std::size_t N>
    constexpr Span(T (&array)[N]) noexcept : data_(array), size_(N) {}

    constexpr T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }
    constexpr T *begin() const noexcept { return data_; }
    constexpr T *end() const noexcept { return data_ + size_; }

private:
    T *data_ = nullptr;
    std::size_t size_ = 0;
};

/// A read-only image: 8-bit sRGB, top row first, rows `stride` bytes apart.
struct ImageView {
    const std::uint8_t *pixels = nullptr;
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::size_t stride = 0;
    fqgan_pixel_format format = FQGAN_PIXEL_FORMAT_RGBA8;

    /// Packed RGBA8 unless a stride is given.
    static ImageView rgba(const std::uint8_t *pixels, std::uint32_t width, std::uint32_t height, std::size_t stride = 0) {
        return {pixels, width, height, stride ? stride : std::size_t(width) * 4, FQGAN_PIXEL_FORMAT_RGBA8};
    }
    /// Packed RGB8 unless a stride is given.
    static ImageView rgb(const std::uint8_t *pixels, std::uint32_t width, std::uint32_t height, std::size_t stride = 0) {
        return {pixels, width, height, stride ? stride : std::size_t(width) * 3, FQGAN_PIXEL_FORMAT_RGB8};
    }

    fqgan_image c() const noexcept { return {pixels, width, height, stride, format}; }
};

/// One sub-codebook of a tokenizer.
struct Codebook {
    std::string name;
    std::uint32_t size;
    std::uint32_t dim;
};

inline std::string version() { return fqgan_version(); }
inline std::uint32_t abi_version() noexcept { return fqgan_abi_version(); }

/// A loaded FQGAN tokenizer: images <-> k token grids.
class Tokenizer {
public:
    /// Loads a tokenizer file; `device` is "cpu", "ndarray", "cuda" or "cuda:N".
    static Tokenizer load_file(const std::string &path, const std::string &device = "cpu") {
        fqgan_tokenizer_params params = fqgan_tokenizer_params_default();
        params.device = device.c_str();
        fqgan_tokenizer *handle = nullptr;
        detail::check(fqgan_tokenizer_load_file(path.c_str(), &params, &handle));
        return Tokenizer(handle);
    }

    /// Loads a tokenizer from the bytes of a tokenizer file (copied; the buffer may go after).
    static Tokenizer load_memory(Span<const std::uint8_t> bytes, const std::string &device = "cpu") {
        fqgan_tokenizer_params params = fqgan_tokenizer_params_default();
        params.device = device.c_str();
        fqgan_tokenizer *handle = nullptr;
        detail::check(fqgan_tokenizer_load_memory(bytes.data(), bytes.size(), &params, &handle));
        return Tokenizer(handle);
    }

    Tokenizer(const Tokenizer &) = delete;
    Tokenizer &operator=(const Tokenizer &) = delete;
    Tokenizer(Tokenizer &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Tokenizer &operator=(Tokenizer &&other) noexcept {
        if (this != &other) {
            fqgan_tokenizer_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    ~Tokenizer() { fqgan_tokenizer_free(handle_); }

    /// The C handle, for calls this wrapper does not cover. Null after a move.
    fqgan_tokenizer *get() const noexcept { return handle_; }

    fqgan_tokenizer_info info() const {
        fqgan_tokenizer_info info{};
        info.struct_size = sizeof info;
        detail::check(fqgan_tokenizer_get_info(handle_, &info));
        return info;
    }

    std::vector<Codebook> codebooks() const {
        std::vector<Codebook> result;
        for (std::uint32_t i = 0; i < info().codebook_count; i++) {
            fqgan_codebook_info codebook{};
            codebook.struct_size = sizeof codebook;
            detail::check(fqgan_tokenizer_get_codebook(handle_, i, &codebook));
            result.push_back({codebook.name, codebook.size, codebook.dim});
        }
        return result;
    }

    /// Encodes an image of the model's size into `tokens` (info().token_count values).
    void encode(const ImageView &image, Span<std::uint32_t> tokens) const {
        fqgan_image c = image.c();
        detail::check(fqgan_tokenizer_encode(handle_, &c, tokens.data(), tokens.size(), nullptr));
    }
    std::vector<std::uint32_t> encode(const ImageView &image) const {
        std::vector<std::uint32_t> tokens(info().token_count);
        encode(image, Span<std::uint32_t>(tokens));
        return tokens;
    }

    /// Decodes token grids into packed RGBA8 (info().rgba_size bytes).
    void decode(Span<const std::uint32_t> tokens, Span<std::uint8_t> rgba) const {
        detail::check(fqgan_tokenizer_decode(handle_, tokens.data(), tokens.size(), rgba.data(), rgba.size(), nullptr));
    }
    std::vector<std::uint8_t> decode(Span<const std::uint32_t> tokens) const {
        std::vector<std::uint8_t> rgba(info().rgba_size);
        decode(tokens, Span<std::uint8_t>(rgba));
        return rgba;
    }

    /// Decodes with only the sub-codebooks listed in `codebooks` (indices 0 .. k - 1).
    void decode_subset(Span<const std::uint32_t> tokens, Span<const std::uint32_t> codebooks,
                       Span<std::uint8_t> rgba) const {
        detail::check(fqgan_tokenizer_decode_subset(handle_, tokens.data(), tokens.size(), codebooks.data(),
                                                    codebooks.size(), rgba.data(), rgba.size(), nullptr));
    }
    std::vector<std::uint8_t> decode_subset(Span<const std::uint32_t> tokens,
                                            Span<const std::uint32_t> codebooks) const {
        std::vector<std::uint8_t> rgba(info().rgba_size);
        decode_subset(tokens, codebooks, Span<std::uint8_t>(rgba));
        return rgba;
    }

private:
    explicit Tokenizer(fqgan_tokenizer *handle) noexcept : handle_(handle) {}
    fqgan_tokenizer *handle_ = nullptr;
};

}  // namespace fqgan

#endif  // FQGAN_HPP
