// fqgan.hpp: header-only C++17 wrapper over the C API in fqgan.h.
//
// - Handles are move-only RAII objects: the destructor frees them.
// - Failures throw fqgan::Error, which carries the fqgan_status and fqgan_last_error()'s message.
// - Buffers are passed as fqgan::Span (pointer + size; std::span is C++20), so std::vector,
//   std::array and raw memory all work; convenience overloads return std::vector.
// - A const Tokenizer or Generator may be used from many threads at once, like the C handles.
// - Progress callbacks are std::function<bool(done, total)>: return false to cancel, which
//   throws fqgan::Error with FQGAN_STATUS_CANCELLED; an exception thrown by the callback
//   cancels the call and is rethrown from it.
//
//   fqgan::Tokenizer tok = fqgan::Tokenizer::load_file("tok.safetensors", "cpu");
//   std::vector<uint32_t> tokens = tok.encode(fqgan::ImageView::rgba(pixels, 256, 256));
//   std::vector<uint8_t> rgba = tok.decode(tokens);
//
//   fqgan::Generator gen = fqgan::Generator::load_file("far.safetensors");
//   std::vector<uint8_t> images = gen.generate_images(tok, fqgan::GenerateParams().class_id(3).seed(7));
//   std::vector<uint8_t> fqt = fqgan::fqt_write(tok, gen.generate(fqgan::GenerateParams().class_id(3)));
#ifndef FQGAN_HPP
#define FQGAN_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
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

/// Owns a C handle: move-only, freed by `Free` on destruction.
template <class T, void (*Free)(T *)>
class Handle {
public:
    explicit Handle(T *handle = nullptr) noexcept : handle_(handle) {}
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) {
            Free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    ~Handle() { Free(handle_); }
    T *get() const noexcept { return handle_; }

private:
    T *handle_;
};
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
inline std::uint32_t abi_minor_version() noexcept { return fqgan_abi_minor_version(); }

/// Sets the CPU thread count for the whole process, before the first model loads (0: the
/// default, FQGAN_NUM_THREADS or one per logical CPU). Throws fqgan::Error when the pool
/// already runs another count.
inline void set_num_threads(std::uint32_t threads) { detail::check(fqgan_set_num_threads(threads)); }
/// The CPU thread count in use.
inline std::uint32_t num_threads() noexcept { return fqgan_get_num_threads(); }

/// The devices this build can use here ("cpu", "ndarray", then "cuda:N"); any of them, or
/// "auto", is a valid device string (ABI minor 3).
inline std::vector<std::string> devices() {
    std::vector<std::string> names(fqgan_device_count());
    for (std::uint32_t i = 0; i < names.size(); i++) {
        const char *name = nullptr;
        detail::check(fqgan_device_name(i, &name));
        names[i] = name;
    }
    return names;
}

/// Receives the library's log messages; it may run on any thread.
using LogSink = std::function<void(fqgan_log_level level, const std::string &message)>;

/// Sends log messages up to `max_level` to `sink` for the whole process; an empty sink silences
/// them (the default). ABI minor 3.
inline void set_log(LogSink sink, fqgan_log_level max_level = FQGAN_LOG_LEVEL_INFO) {
    if (!sink) {
        detail::check(fqgan_set_log_callback(nullptr, 0, nullptr));
        return;
    }
    // Never freed: another thread may still be inside the sink this one replaces.
    auto *kept = new LogSink(std::move(sink));
    fqgan_log_fn forward = [](void *user_data, std::int32_t level, const char *message) {
        try {
            (*static_cast<LogSink *>(user_data))(static_cast<fqgan_log_level>(level), message);
        } catch (...) {
            // Nothing may unwind into C; a failing sink loses its message.
        }
    };
    detail::check(fqgan_set_log_callback(forward, max_level, kept));
}

/// Called as long work advances (generation: token positions; whole images: tiles; loads:
/// tensors read); return false to cancel.
using Progress = std::function<bool(std::uint32_t done, std::uint32_t total)>;

namespace detail {
/// Runs a C call that takes a progress callback: a std::function travels through user_data,
/// and an exception it throws is carried past the C frames and rethrown here.
template <class Call>
void with_progress(const Progress &progress, Call call) {
    struct State {
        const Progress *progress;
        std::exception_ptr error;
    } state{&progress, nullptr};
    fqgan_progress_fn trampoline = [](void *user_data, std::uint32_t done, std::uint32_t total) -> int {
        State *state = static_cast<State *>(user_data);
        try {
            return (*state->progress)(done, total) ? 0 : 1;
        } catch (...) {
            state->error = std::current_exception();
            return 1;
        }
    };
    fqgan_status status = progress ? call(trampoline, static_cast<void *>(&state)) : call(nullptr, nullptr);
    if (state.error) std::rethrow_exception(state.error);
    check(status);
}
}  // namespace detail

/// A loaded FQGAN tokenizer: images <-> k token grids.
class Tokenizer {
public:
    /// Loads a tokenizer file; `device` is "cpu", "ndarray", "cuda" or "cuda:N". A `progress`
    /// that returns false cancels the load (ABI minor 4 when given).
    static Tokenizer load_file(const std::string &path, const std::string &device = "cpu",
                               const Progress &progress = {}) {
        fqgan_tokenizer_params params = fqgan_tokenizer_params_default();
        params.device = device.c_str();
        fqgan_tokenizer *handle = nullptr;
        if (!progress) {
            detail::check(fqgan_tokenizer_load_file(path.c_str(), &params, &handle));
            return Tokenizer(handle);
        }
        detail::with_progress(progress, [&](fqgan_progress_fn fn, void *user_data) {
            return fqgan_tokenizer_load_file_with_progress(path.c_str(), &params, fn, user_data, &handle);
        });
        return Tokenizer(handle);
    }

    /// Loads a tokenizer from the bytes of a tokenizer file (copied; the buffer may go after).
    static Tokenizer load_memory(Span<const std::uint8_t> bytes, const std::string &device = "cpu",
                                 const Progress &progress = {}) {
        fqgan_tokenizer_params params = fqgan_tokenizer_params_default();
        params.device = device.c_str();
        fqgan_tokenizer *handle = nullptr;
        if (!progress) {
            detail::check(fqgan_tokenizer_load_memory(bytes.data(), bytes.size(), &params, &handle));
            return Tokenizer(handle);
        }
        detail::with_progress(progress, [&](fqgan_progress_fn fn, void *user_data) {
            return fqgan_tokenizer_load_memory_with_progress(bytes.data(), bytes.size(), &params, fn, user_data,
                                                             &handle);
        });
        return Tokenizer(handle);
    }

    /// Loads the tokenizer built into the library (ufoai textures; ABI minor 2).
    static Tokenizer load_builtin(const std::string &device = "cpu") {
        fqgan_tokenizer_params params = fqgan_tokenizer_params_default();
        params.device = device.c_str();
        fqgan_tokenizer *handle = nullptr;
        detail::check(fqgan_tokenizer_load_builtin(&params, &handle));
        return Tokenizer(handle);
    }

    /// The C handle, for calls this wrapper does not cover. Null after a move.
    fqgan_tokenizer *get() const noexcept { return handle_.get(); }

    fqgan_tokenizer_info info() const {
        fqgan_tokenizer_info info{};
        info.struct_size = sizeof info;
        detail::check(fqgan_tokenizer_get_info(handle_.get(), &info));
        return info;
    }

    std::vector<Codebook> codebooks() const {
        std::vector<Codebook> result;
        for (std::uint32_t i = 0; i < info().codebook_count; i++) {
            fqgan_codebook_info codebook{};
            codebook.struct_size = sizeof codebook;
            detail::check(fqgan_tokenizer_get_codebook(handle_.get(), i, &codebook));
            result.push_back({codebook.name, codebook.size, codebook.dim});
        }
        return result;
    }

    /// Encodes an image of the model's size into `tokens` (info().token_count values).
    void encode(const ImageView &image, Span<std::uint32_t> tokens) const {
        fqgan_image c = image.c();
        detail::check(fqgan_tokenizer_encode(handle_.get(), &c, tokens.data(), tokens.size(), nullptr));
    }
    std::vector<std::uint32_t> encode(const ImageView &image) const {
        std::vector<std::uint32_t> tokens(info().token_count);
        encode(image, Span<std::uint32_t>(tokens));
        return tokens;
    }

    /// Decodes token grids into packed RGBA8 (info().rgba_size bytes).
    void decode(Span<const std::uint32_t> tokens, Span<std::uint8_t> rgba) const {
        detail::check(fqgan_tokenizer_decode(handle_.get(), tokens.data(), tokens.size(), rgba.data(), rgba.size(), nullptr));
    }
    std::vector<std::uint8_t> decode(Span<const std::uint32_t> tokens) const {
        std::vector<std::uint8_t> rgba(info().rgba_size);
        decode(tokens, Span<std::uint8_t>(rgba));
        return rgba;
    }

    /// Decodes with only the sub-codebooks listed in `codebooks` (indices 0 .. k - 1).
    void decode_subset(Span<const std::uint32_t> tokens, Span<const std::uint32_t> codebooks,
                       Span<std::uint8_t> rgba) const {
        detail::check(fqgan_tokenizer_decode_subset(handle_.get(), tokens.data(), tokens.size(), codebooks.data(),
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
    detail::Handle<fqgan_tokenizer, fqgan_tokenizer_free> handle_;
};

/// What to generate and how to sample it: the C defaults (official sampling), changed by
/// chained setters, e.g. GenerateParams().class_id(3).count(4).seed(7).top_p(0.9f).
class GenerateParams {
public:
    GenerateParams &class_id(std::uint32_t value) noexcept { return c_.class_id = value, *this; }
    GenerateParams &count(std::uint32_t value) noexcept { return c_.count = value, *this; }
    GenerateParams &seed(std::uint64_t value) noexcept { return c_.seed = value, *this; }
    GenerateParams &cfg_scale(float value) noexcept { return c_.cfg_scale = value, *this; }
    GenerateParams &temperature(float value) noexcept { return c_.temperature = value, *this; }
    GenerateParams &top_k(std::uint32_t value) noexcept { return c_.top_k = value, *this; }
    GenerateParams &top_p(float value) noexcept { return c_.top_p = value, *this; }
    const fqgan_generate_params &c() const noexcept { return c_; }

private:
    fqgan_generate_params c_ = fqgan_generate_params_default();
};


/// A loaded FAR generator: class id -> k token grids (and images, with a matching Tokenizer).
class Generator {
public:
    /// Loads a generator file; `device` is "cpu", "ndarray", "cuda" or "cuda:N". A `progress`
    /// that returns false cancels the load (ABI minor 4 when given).
    static Generator load_file(const std::string &path, const std::string &device = "cpu",
                               const Progress &progress = {}) {
        fqgan_generator_params params = fqgan_generator_params_default();
        params.device = device.c_str();
        fqgan_generator *handle = nullptr;
        if (!progress) {
            detail::check(fqgan_generator_load_file(path.c_str(), &params, &handle));
            return Generator(handle);
        }
        detail::with_progress(progress, [&](fqgan_progress_fn fn, void *user_data) {
            return fqgan_generator_load_file_with_progress(path.c_str(), &params, fn, user_data, &handle);
        });
        return Generator(handle);
    }

    /// Loads a generator from the bytes of a generator file (copied; the buffer may go after).
    static Generator load_memory(Span<const std::uint8_t> bytes, const std::string &device = "cpu") {
        fqgan_generator_params params = fqgan_generator_params_default();
        params.device = device.c_str();
        fqgan_generator *handle = nullptr;
        detail::check(fqgan_generator_load_memory(bytes.data(), bytes.size(), &params, &handle));
        return Generator(handle);
    }

    /// Loads the generator built into the library (10 ufoai texture classes; it goes with
    /// `Tokenizer::load_builtin`; ABI minor 2).
    static Generator load_builtin(const std::string &device = "cpu") {
        fqgan_generator_params params = fqgan_generator_params_default();
        params.device = device.c_str();
        fqgan_generator *handle = nullptr;
        detail::check(fqgan_generator_load_builtin(&params, &handle));
        return Generator(handle);
    }

    /// The C handle, for calls this wrapper does not cover. Null after a move.
    fqgan_generator *get() const noexcept { return handle_.get(); }

    /// Stores the matrix weights as `precision` (`FQGAN_WEIGHT_PRECISION_BF16`: half the memory
    /// and about half the time per token on the CPU). No other call on this generator may run
    /// meanwhile. ABI minor 5.
    void set_weight_precision(fqgan_weight_precision precision) {
        detail::check(fqgan_generator_set_weight_precision(handle_.get(), precision));
    }

    fqgan_generator_info info() const {
        fqgan_generator_info info{};
        info.struct_size = sizeof info;
        detail::check(fqgan_generator_get_info(handle_.get(), &info));
        return info;
    }

    /// The name of each class, in label order (labels as text when the file stores no names).
    std::vector<std::string> class_names() const {
        std::vector<std::string> names(info().class_count);
        for (std::uint32_t label = 0; label < names.size(); label++) {
            const char *name = nullptr;
            detail::check(fqgan_generator_get_class_name(handle_.get(), label, &name));
            names[label] = name;
        }
        return names;
    }

    /// The vocabulary size of each sub-token.
    std::vector<std::uint32_t> vocab_sizes() const {
        std::vector<std::uint32_t> sizes(info().codebook_count);
        for (std::uint32_t i = 0; i < sizes.size(); i++)
            detail::check(fqgan_generator_get_vocab_size(handle_.get(), i, &sizes[i]));
        return sizes;
    }

    /// Generates params' count images into `tokens` (count * info().token_count ids, laid out
    /// [count][k][grid_height][grid_width]).
    void generate(const GenerateParams &params, Span<std::uint32_t> tokens, const Progress &progress = {}) const {
        detail::with_progress(progress, [&](fqgan_progress_fn fn, void *user_data) {
            return fqgan_generate(handle_.get(), &params.c(), tokens.data(), tokens.size(), nullptr, fn, user_data);
        });
    }
    std::vector<std::uint32_t> generate(const GenerateParams &params, const Progress &progress = {}) const {
        std::vector<std::uint32_t> tokens(std::size_t(params.c().count) * info().token_count);
        generate(params, Span<std::uint32_t>(tokens), progress);
        return tokens;
    }

    /// Prefix completion (ABI minor 3): params' count images that each keep the top
    /// `prefix_rows` token rows of `prefix` (one image's tokens) and continue them.
    std::vector<std::uint32_t> complete(const GenerateParams &params, Span<const std::uint32_t> prefix,
                                        std::uint32_t prefix_rows, const Progress &progress = {}) const {
        std::vector<std::uint32_t> tokens(std::size_t(params.c().count) * info().token_count);
        detail::with_progress(progress, [&](fqgan_progress_fn fn, void *user_data) {
            return fqgan_generate_completion(handle_.get(), &params.c(), prefix.data(), prefix.size(), prefix_rows,
                                             tokens.data(), tokens.size(), nullptr, fn, user_data);
        });
        return tokens;
    }

    /// Generates and decodes with `tokenizer`: count packed RGBA8 images, one after the other.
    void generate_images(const Tokenizer &tokenizer, const GenerateParams &params, Span<std::uint8_t> rgba,
                         const Progress &progress = {}) const {
        detail::with_progress(progress, [&](fqgan_progress_fn fn, void *user_data) {
            return fqgan_generate_images(handle_.get(), tokenizer.get(), &params.c(), rgba.data(), rgba.size(), nullptr,
                                         fn, user_data);
        });
    }
    std::vector<std::uint8_t> generate_images(const Tokenizer &tokenizer, const GenerateParams &params,
                                              const Progress &progress = {}) const {
        std::vector<std::uint8_t> rgba(std::size_t(params.c().count) * tokenizer.info().rgba_size);
        generate_images(tokenizer, params, Span<std::uint8_t>(rgba), progress);
        return rgba;
    }

private:
    explicit Generator(fqgan_generator *handle) noexcept : handle_(handle) {}
    detail::Handle<fqgan_generator, fqgan_generator_free> handle_;
};

/// The bytes of a .fqt file holding `tokens` (one image of the tokenizer's size unless params
/// say otherwise), made with `tokenizer`.
inline std::vector<std::uint8_t> fqt_write(const Tokenizer &tokenizer, Span<const std::uint32_t> tokens,
                                           fqgan_fqt_coding coding = FQGAN_FQT_CODING_PACKED) {
    fqgan_fqt_write_params params = fqgan_fqt_write_params_default();
    params.coding = coding;
    std::size_t size = 0;
    detail::check(fqgan_fqt_write(tokenizer.get(), &params, tokens.data(), tokens.size(), nullptr, 0, &size));
    std::vector<std::uint8_t> bytes(size);
    detail::check(fqgan_fqt_write(tokenizer.get(), &params, tokens.data(), tokens.size(), bytes.data(), size, nullptr));
    return bytes;
}

/// A .fqt file read back: its header and token ids.
struct FqtFile {
    fqgan_fqt_info info;
    std::vector<std::uint32_t> tokens;
};

/// Reads the bytes of a .fqt file; with a tokenizer, a file made by another model throws.
inline FqtFile fqt_read(Span<const std::uint8_t> bytes, const Tokenizer *tokenizer = nullptr) {
    FqtFile file{};
    file.info.struct_size = sizeof file.info;
    const fqgan_tokenizer *tok = tokenizer ? tokenizer->get() : nullptr;
    detail::check(fqgan_fqt_read(tok, bytes.data(), bytes.size(), &file.info, nullptr, 0, nullptr));
    file.tokens.resize(file.info.token_count);
    detail::check(fqgan_fqt_read(tok, bytes.data(), bytes.size(), nullptr, file.tokens.data(), file.tokens.size(), nullptr));
    return file;
}

/// A whole decoded image: packed RGBA8, `width * 4` bytes per row.
struct Rgba8Image {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::vector<std::uint8_t> pixels;
};

/// Encodes an image of any size into the bytes of a .fqt file, tiled, with its alpha plane
/// when any pixel is not opaque (ABI minor 3). `params`: overlap, coding, bottom-up rows and
/// the work limit (`fqgan_fqt_image_params_default()`).
inline std::vector<std::uint8_t> fqt_encode_image(const Tokenizer &tokenizer, const ImageView &image,
                                                  const fqgan_fqt_image_params &params = fqgan_fqt_image_params_default(),
                                                  const Progress &progress = nullptr) {
    const fqgan_image view = image.c();
    std::size_t size = 0;
    detail::check(fqgan_fqt_encode_image(tokenizer.get(), &view, &params, nullptr, nullptr, nullptr, 0, &size));
    std::vector<std::uint8_t> bytes(size);
    detail::with_progress(progress, [&](fqgan_progress_fn callback, void *user_data) {
        return fqgan_fqt_encode_image(tokenizer.get(), &view, &params, callback, user_data, bytes.data(), bytes.size(),
                                      &size);
    });
    bytes.resize(size);
    return bytes;
}

/// Decodes the bytes of a .fqt file made with `tokenizer` into the whole image, its tiles
/// blended and its alpha kept (ABI minor 3).
inline Rgba8Image fqt_decode_image(const Tokenizer &tokenizer, Span<const std::uint8_t> fqt,
                                   const fqgan_fqt_image_params &params = fqgan_fqt_image_params_default(),
                                   const Progress &progress = nullptr) {
    Rgba8Image image;
    fqgan_fqt_info info{};
    info.struct_size = sizeof info;
    detail::check(fqgan_fqt_read(tokenizer.get(), fqt.data(), fqt.size(), &info, nullptr, 0, nullptr));
    image.width = info.width;
    image.height = info.height;
    image.pixels.resize(std::size_t(info.width) * info.height * 4);
    detail::with_progress(progress, [&](fqgan_progress_fn callback, void *user_data) {
        return fqgan_fqt_decode_image(tokenizer.get(), fqt.data(), fqt.size(), &params, callback, user_data,
                                      image.pixels.data(), image.pixels.size(), nullptr);
    });
    return image;
}

}  // namespace fqgan

#endif  // FQGAN_HPP
