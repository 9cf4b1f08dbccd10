// Fqgan.cs: C# binding of libfqgan (include/fqgan.h), for .NET Standard 2.1, Mono and Unity
// (Mono and IL2CPP). Copy this file into a project; it needs unsafe code enabled
// (csc/mcs -unsafe, <AllowUnsafeBlocks>, or "Allow 'unsafe' Code" / an .asmdef in Unity).
//
//   using (var tok = Fqgan.Tokenizer.LoadFile("tok.safetensors", "cpu"))
//   {
//       uint[] tokens = tok.Encode(rgba, width, height, Fqgan.PixelFormat.Rgba8);
//       byte[] decoded = tok.Decode(tokens);   // RGBA8, tok.Info.ImageWidth x ImageHeight
//   }
//
//   using (var gen = Fqgan.Generator.LoadFile("far.safetensors"))
//   {
//       var p = new Fqgan.GenerateParams { ClassId = 3, Seed = 7 };
//       byte[] image = gen.GenerateImages(tok, p, (done, total) => true);  // false cancels
//       byte[] fqt = Fqgan.Fqt.Write(tok, gen.Generate(p));
//   }
//
// Failures throw FqganException (Status + the library's message; Status.Cancelled when a
// progress callback returned false). A Tokenizer or Generator may be used from many threads at
// once; after Dispose the native handle is freed once calls in flight return (SafeHandle
// reference counting).
using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

#if !UNITY_5_3_OR_NEWER
namespace AOT
{
    /// <summary>Unity's marker for native-to-managed callbacks (IL2CPP compiles a reverse
    /// P/Invoke wrapper for each); Unity defines it, other runtimes get this stand-in.</summary>
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type type) { }
    }
}
#endif

namespace Fqgan
{
    /// <summary>fqgan_status: the result of every fallible call.</summary>
    public enum Status
    {
        Ok = 0,
        InvalidArgument = 1,
        BufferTooSmall = 2,
        Io = 3,
        InvalidModel = 4,
        Device = 5,
        Internal = 6,
        /// <summary>A progress callback returned false.</summary>
        Cancelled = 7,
    }

    /// <summary>fqgan_fqt_coding: how a .fqt file stores its token ids (both lossless).</summary>
    public enum FqtCoding
    {
        /// <summary>Bit-packed, fixed size.</summary>
        Packed = 0,
        /// <summary>Range-coded, smaller.</summary>
        Entropy = 1,
    }

    /// <summary>Called as long work advances (generation: token positions; whole images: tiles;
    /// done = 1 .. total); return false to cancel. Runs on the calling thread; an exception it
    /// throws cancels and is rethrown.</summary>
    public delegate bool Progress(int done, int total);

    /// <summary>fqgan_weight_precision: how a generator stores its matrix weights.</summary>
    public enum WeightPrecision
    {
        /// <summary>As trained; outputs match the official code (the default).</summary>
        F32 = 0,
        /// <summary>Rounded to bf16: half the memory, about half the time per token on the CPU.</summary>
        Bf16 = 1,
    }

    /// <summary>fqgan_log_level: how much a log message matters.</summary>
    public enum LogLevel
    {
        Error = 1,
        Warn = 2,
        Info = 3,
        Debug = 4,
    }

    /// <summary>Receives the library's log messages. It may run on any thread (never call Unity
    /// APIs from it; queue the text for the main thread); an exception it throws is dropped.</summary>
    public delegate void LogHandler(LogLevel level, string message);

    /// <summary>fqgan_pixel_format: the layout of input pixels.</summary>
    public enum PixelFormat
    {
        /// <summary>4 bytes per pixel, red, green, blue, alpha (alpha is ignored).</summary>
        Rgba8 = 0,
        /// <summary>3 bytes per pixel, red, green, blue.</summary>
        Rgb8 = 1,
    }

    /// <summary>A failed libfqgan call: its status and fqgan_last_error()'s message.</summary>
    public sealed class FqganException : Exception
    {
        public Status Status { get; }

        public FqganException(Status status, string message) : base(message)
        {
            Status = status;
        }
    }

    /// <summary>What a tokenizer takes and produces (fqgan_tokenizer_info).</summary>
    public sealed class TokenizerInfo
    {
        /// <summary>k, the number of sub-codebooks.</summary>
        public int CodebookCount { get; internal set; }
        public int ImageWidth { get; internal set; }
        public int ImageHeight { get; internal set; }
        public int GridWidth { get; internal set; }
        public int GridHeight { get; internal set; }
        public int Downsample { get; internal set; }
        /// <summary>Length of a token array: CodebookCount * GridHeight * GridWidth.</summary>
        public int TokenCount { get; internal set; }
        /// <summary>Bytes of a decoded RGBA8 image: ImageWidth * ImageHeight * 4.</summary>
        public int RgbaSize { get; internal set; }
        /// <summary>"cpu", "ndarray" or "cuda:N".</summary>
        public string Device { get; internal set; }
    }

    /// <summary>One sub-codebook (fqgan_codebook_info).</summary>
    public sealed class Codebook
    {
        public string Name { get; internal set; }
        /// <summary>Number of entries: ids are 0 .. Size - 1.</summary>
        public int Size { get; internal set; }
        public int Dim { get; internal set; }
    }

    /// <summary>What a generator makes (fqgan_generator_info).</summary>
    public sealed class GeneratorInfo
    {
        /// <summary>Class ids are 0 .. ClassCount - 1.</summary>
        public int ClassCount { get; internal set; }
        /// <summary>k, sub-tokens per position.</summary>
        public int CodebookCount { get; internal set; }
        public int GridWidth { get; internal set; }
        public int GridHeight { get; internal set; }
        /// <summary>Whether CfgScale may differ from 1.</summary>
        public bool SupportsGuidance { get; internal set; }
        /// <summary>Token ids of one image: CodebookCount * GridHeight * GridWidth.</summary>
        public int TokenCount { get; internal set; }
        /// <summary>The vocabulary size of each sub-token.</summary>
        public IReadOnlyList<int> VocabSizes { get; internal set; }
        /// <summary>Each class's name, in label order (the label as text when the file stores
        /// no names).</summary>
        public IReadOnlyList<string> ClassNames { get; internal set; }
        public string Device { get; internal set; }
    }

    /// <summary>What to generate and how to sample (fqgan_generate_params); starts at the
    /// library's defaults (the official sampling: CfgScale 2, Temperature 1, TopK 0, TopP 1).</summary>
    public sealed class GenerateParams
    {
        public int ClassId { get; set; }
        /// <summary>Images per call, all of ClassId.</summary>
        public int Count { get; set; }
        public ulong Seed { get; set; }
        public float CfgScale { get; set; }
        public float Temperature { get; set; }
        /// <summary>0 keeps all ids, 1 is greedy.</summary>
        public int TopK { get; set; }
        /// <summary>In (0, 1]; 1 keeps all ids.</summary>
        public float TopP { get; set; }

        public GenerateParams()
        {
            Native.GenerateParams d = Native.fqgan_generate_params_default();
            ClassId = (int)d.ClassId;
            Count = (int)d.Count;
            Seed = d.Seed;
            CfgScale = d.CfgScale;
            Temperature = d.Temperature;
            TopK = (int)d.TopK;
            TopP = d.TopP;
        }

        internal Native.GenerateParams ToNative()
        {
            // Negative values would wrap to huge ones: refuse them here, naming the property.
            if (ClassId < 0) throw new ArgumentOutOfRangeException(nameof(ClassId));
            if (Count < 0) throw new ArgumentOutOfRangeException(nameof(Count));
            if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK));
            Native.GenerateParams p = Native.fqgan_generate_params_default();
            p.ClassId = (uint)ClassId;
            p.Count = (uint)Count;
            p.Seed = Seed;
            p.CfgScale = CfgScale;
            p.Temperature = Temperature;
            p.TopK = (uint)TopK;
            p.TopP = TopP;
            return p;
        }
    }

    /// <summary>The header of a .fqt file (fqgan_fqt_info).</summary>
    public sealed class FqtInfo
    {
        public int Width { get; internal set; }
        public int Height { get; internal set; }
        public int TileSize { get; internal set; }
        public int TileOverlap { get; internal set; }
        public int TilesX { get; internal set; }
        public int TilesY { get; internal set; }
        public int Grid { get; internal set; }
        public IReadOnlyList<int> CodebookSizes { get; internal set; }
        public int TokenCount { get; internal set; }
        public bool HasAlpha { get; internal set; }
        public FqtCoding Coding { get; internal set; }
        /// <summary>The 16-byte fingerprint of the model that made the file.</summary>
        public byte[] Fingerprint { get; internal set; }
    }

    /// <summary>A .fqt file read back.</summary>
    public sealed class FqtFile
    {
        public FqtInfo Info { get; internal set; }
        /// <summary>Every tile's ids, each laid out as Tokenizer.Encode returns them.</summary>
        public uint[] Tokens { get; internal set; }
    }

    /// <summary>How Fqt.EncodeImage and Fqt.DecodeImage handle a whole image
    /// (fqgan_fqt_image_params; ABI minor 3).</summary>
    public sealed class FqtImageOptions
    {
        /// <summary>Encoding: pixels shared by neighbouring tiles; -1 for the tokenizer's default
        /// (an eighth of a tile). Decoding uses the overlap the file records.</summary>
        public int Overlap { get; set; } = -1;
        /// <summary>Encoding: how ids are stored.</summary>
        public FqtCoding Coding { get; set; } = FqtCoding.Entropy;
        /// <summary>Rows run from the bottom up, as in Unity's Texture2D (GetRawTextureData /
        /// LoadRawTextureData of an RGBA32 texture) and OpenGL; both ways.</summary>
        public bool BottomUp { get; set; }
        /// <summary>The most model work one call may do, in tile pixels; 0 for the library's
        /// default (2^24, a 4096 x 4096 image).</summary>
        public long MaxWorkPixels { get; set; }

        internal Native.FqtImageParams ToNative()
        {
            Native.FqtImageParams p = Native.fqgan_fqt_image_params_default();
            if (Overlap >= 0) p.Overlap = (uint)Overlap;
            p.Coding = (int)Coding;
            p.BottomUp = BottomUp ? 1u : 0u;
            if (MaxWorkPixels < 0) throw new ArgumentOutOfRangeException(nameof(MaxWorkPixels));
            p.MaxWorkPixels = (ulong)MaxWorkPixels;
            return p;
        }
    }

    /// <summary>A whole decoded image: packed RGBA8, Width * 4 bytes per row.</summary>
    public sealed class Rgba8Image
    {
        public int Width { get; internal set; }
        public int Height { get; internal set; }
        public byte[] Pixels { get; internal set; }
    }

    /// <summary>The library's version information.</summary>
    public static unsafe class Library
    {
        /// <summary>The ABI this binding was written for (FQGAN_ABI_VERSION).</summary>
        public const uint AbiVersion = 1;

        public static string Version => Native.Utf8(Native.fqgan_version());

        /// <summary>Throws when the loaded native library has another ABI than this binding.</summary>
        public static void CheckAbi()
        {
            uint native = Native.fqgan_abi_version();
            if (native != AbiVersion)
                throw new InvalidOperationException($"libfqgan has ABI {native}; this binding needs {AbiVersion}");
        }

        /// <summary>CPU threads for the whole process: set it before the first model loads (0: the
        /// default, FQGAN_NUM_THREADS or one per logical CPU); setting another count once the pool
        /// runs throws. Needs ABI minor version 1.</summary>
        public static uint NumThreads
        {
            get => Native.fqgan_get_num_threads();
            set => Native.Check(Native.fqgan_set_num_threads(value));
        }

        /// <summary>The devices this build can use here ("cpu", "ndarray", then "cuda:N"); any of
        /// them, or "auto", is a valid device string. Needs ABI minor version 3.</summary>
        public static string[] Devices
        {
            get
            {
                var names = new string[Native.fqgan_device_count()];
                for (uint i = 0; i < names.Length; i++)
                {
                    byte* name;
                    Native.Check(Native.fqgan_device_name(i, &name));
                    names[i] = Native.Utf8(name);
                }
                return names;
            }
        }

        private static volatile LogHandler _log;
        // One delegate for the life of the program, as for progress callbacks.
        private static readonly Native.LogCallback OnLogCallback = OnLog;

        [AOT.MonoPInvokeCallback(typeof(Native.LogCallback))]
        private static void OnLog(IntPtr userData, int level, byte* message)
        {
            try
            {
                _log?.Invoke((LogLevel)level, Native.Utf8(message));
            }
            catch (Exception)
            {
                // Nothing may unwind into native code; a failing log handler loses its message.
            }
        }

        /// <summary>Sends log messages up to maxLevel to handler (global; null silences, the
        /// default). Needs ABI minor version 3.</summary>
        public static void SetLog(LogHandler handler, LogLevel maxLevel = LogLevel.Info)
        {
            _log = handler;
            Native.Check(handler == null
                ? Native.fqgan_set_log_callback(null, 0, IntPtr.Zero)
                : Native.fqgan_set_log_callback(OnLogCallback, (int)maxLevel, IntPtr.Zero));
        }
    }

    /// <summary>Owns a fqgan_tokenizer*; frees it once no call uses it any more.</summary>
    public sealed class TokenizerHandle : SafeHandle
    {
        public TokenizerHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            Native.fqgan_tokenizer_free(handle);
            return true;
        }
    }

    /// <summary>A loaded FQGAN tokenizer: images to k token grids and back.</summary>
    public sealed unsafe class Tokenizer : IDisposable
    {
        private readonly TokenizerHandle _handle;

        internal TokenizerHandle Handle => _handle;

        /// <summary>Sizes of the model, read once at load.</summary>
        public TokenizerInfo Info { get; }

        /// <summary>The sub-codebooks, in token-grid order.</summary>
        public IReadOnlyList<Codebook> Codebooks { get; }

        /// <summary>Loads a tokenizer file. device: "cpu", "ndarray", "cuda" or "cuda:N".</summary>
        public static Tokenizer LoadFile(string path, string device = "cpu")
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            byte[] pathUtf8 = Native.ToUtf8(path);
            return Load(device, (ref Native.TokenizerParams p, out TokenizerHandle h) =>
            {
                fixed (byte* pathPtr = pathUtf8)
                fixed (Native.TokenizerParams* paramsPtr = &p)
                    return Native.fqgan_tokenizer_load_file(pathPtr, paramsPtr, out h);
            });
        }

        /// <summary>Loads a tokenizer file, telling progress the tensors read; returning false
        /// from it cancels the load (FqganException with Status.Cancelled). ABI minor 4.</summary>
        public static Tokenizer LoadFile(string path, string device, Progress progress)
        {
            if (progress == null) return LoadFile(path, device);
            if (path == null) throw new ArgumentNullException(nameof(path));
            byte[] pathUtf8 = Native.ToUtf8(path);
            return Load(device, (ref Native.TokenizerParams p, out TokenizerHandle h) =>
            {
                fixed (byte* pathPtr = pathUtf8)
                fixed (Native.TokenizerParams* paramsPtr = &p)
                {
                    IntPtr pathAddress = (IntPtr)pathPtr, paramsAddress = (IntPtr)paramsPtr;
                    TokenizerHandle loaded = null;
                    Status status = Native.RunWithProgress(progress, (callback, userData) =>
                        Native.fqgan_tokenizer_load_file_with_progress(
                            (byte*)pathAddress, (Native.TokenizerParams*)paramsAddress, callback, userData, out loaded));
                    h = loaded;
                    return status;
                }
            });
        }

        /// <summary>LoadFile on a worker thread; cancelling the token stops the load between
        /// tensors and the task ends as cancelled. ABI minor 4.</summary>
        public static Task<Tokenizer> LoadFileAsync(string path, string device = "cpu", CancellationToken cancel = default) =>
            Task.Run(() => Native.Cancellable(cancel, progress => LoadFile(path, device, progress)), cancel);

        /// <summary>Loads a tokenizer from the bytes of a tokenizer file (copied by the library).</summary>
        public static Tokenizer LoadMemory(byte[] data, string device = "cpu")
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            return LoadMemory(new ReadOnlySpan<byte>(data), device);
        }

        /// <inheritdoc cref="LoadMemory(byte[], string)"/>
        public static Tokenizer LoadMemory(ReadOnlySpan<byte> data, string device = "cpu")
        {
            // A span cannot be captured by the lambda below: pin it here for the whole load.
            fixed (byte* dataPtr = data)
            {
                IntPtr address = (IntPtr)dataPtr;
                UIntPtr size = (UIntPtr)data.Length;
                return Load(device, (ref Native.TokenizerParams p, out TokenizerHandle h) =>
                {
                    fixed (Native.TokenizerParams* paramsPtr = &p)
                        return Native.fqgan_tokenizer_load_memory((void*)address, size, paramsPtr, out h);
                });
            }
        }

        /// <summary>LoadMemory telling progress the tensors read; returning false from it cancels
        /// the load (FqganException with Status.Cancelled). ABI minor 4.</summary>
        public static Tokenizer LoadMemory(byte[] data, string device, Progress progress)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            return LoadMemory(new ReadOnlySpan<byte>(data), device, progress);
        }

        /// <inheritdoc cref="LoadMemory(byte[], string, Progress)"/>
        public static Tokenizer LoadMemory(ReadOnlySpan<byte> data, string device, Progress progress)
        {
            if (progress == null) return LoadMemory(data, device);
            fixed (byte* dataPtr = data)
            {
                IntPtr address = (IntPtr)dataPtr;
                UIntPtr size = (UIntPtr)data.Length;
                return Load(device, (ref Native.TokenizerParams p, out TokenizerHandle h) =>
                {
                    fixed (Native.TokenizerParams* paramsPtr = &p)
                    {
                        IntPtr paramsAddress = (IntPtr)paramsPtr;
                        TokenizerHandle loaded = null;
                        Status status = Native.RunWithProgress(progress, (callback, userData) =>
                            Native.fqgan_tokenizer_load_memory_with_progress(
                                (void*)address, size, (Native.TokenizerParams*)paramsAddress, callback, userData, out loaded));
                        h = loaded;
                        return status;
                    }
                });
            }
        }

        /// <summary>LoadMemory on a worker thread, cancelled as LoadFileAsync. ABI minor 4.</summary>
        public static Task<Tokenizer> LoadMemoryAsync(byte[] data, string device = "cpu", CancellationToken cancel = default) =>
            Task.Run(() => Native.Cancellable(cancel, progress => LoadMemory(data, device, progress)), cancel);

        /// <summary>Loads the tokenizer built into the library (ufoai textures; ABI minor 2).</summary>
        public static Tokenizer LoadBuiltin(string device = "cpu")
        {
            return Load(device, (ref Native.TokenizerParams p, out TokenizerHandle h) =>
            {
                fixed (Native.TokenizerParams* paramsPtr = &p)
                    return Native.fqgan_tokenizer_load_builtin(paramsPtr, out h);
            });
        }

        private delegate Status LoadCall(ref Native.TokenizerParams p, out TokenizerHandle handle);

        private static Tokenizer Load(string device, LoadCall call)
        {
            if (device == null) throw new ArgumentNullException(nameof(device));
            byte[] deviceUtf8 = Native.ToUtf8(device);
            Native.TokenizerParams p = Native.fqgan_tokenizer_params_default();
            fixed (byte* devicePtr = deviceUtf8)
            {
                p.Device = devicePtr;
                Status status = call(ref p, out TokenizerHandle handle);
                if (status != Status.Ok)
                {
                    string message = Native.LastError();
                    handle.Dispose();
                    throw new FqganException(status, message);
                }
                return new Tokenizer(handle);
            }
        }

        private Tokenizer(TokenizerHandle handle)
        {
            _handle = handle;
            var info = new Native.TokenizerInfo { StructSize = (UIntPtr)sizeof(Native.TokenizerInfo) };
            Native.Check(Native.fqgan_tokenizer_get_info(_handle, &info));
            Info = new TokenizerInfo
            {
                CodebookCount = (int)info.CodebookCount,
                ImageWidth = (int)info.ImageWidth,
                ImageHeight = (int)info.ImageHeight,
                GridWidth = (int)info.GridWidth,
                GridHeight = (int)info.GridHeight,
                Downsample = (int)info.Downsample,
                TokenCount = (int)info.TokenCount,
                RgbaSize = (int)info.RgbaSize,
                Device = Native.Utf8(info.Device),
            };
            var codebooks = new List<Codebook>();
            for (uint i = 0; i < info.CodebookCount; i++)
            {
                var codebook = new Native.CodebookInfo { StructSize = (UIntPtr)sizeof(Native.CodebookInfo) };
                Native.Check(Native.fqgan_tokenizer_get_codebook(_handle, i, &codebook));
                codebooks.Add(new Codebook { Name = Native.Utf8(codebook.Name), Size = (int)codebook.Size, Dim = (int)codebook.Dim });
            }
            Codebooks = codebooks;
        }

        /// <summary>Encodes an image of Info.ImageWidth x Info.ImageHeight into Info.TokenCount ids.
        /// stride: bytes from row to row; 0 means packed.</summary>
        public uint[] Encode(byte[] pixels, int width, int height, PixelFormat format = PixelFormat.Rgba8, int stride = 0)
        {
            if (pixels == null) throw new ArgumentNullException(nameof(pixels));
            var tokens = new uint[Info.TokenCount];
            Encode(new ReadOnlySpan<byte>(pixels), width, height, format, stride, tokens);
            return tokens;
        }

        /// <summary>As Encode, into caller memory of at least Info.TokenCount values.</summary>
        public void Encode(ReadOnlySpan<byte> pixels, int width, int height, PixelFormat format, int stride, Span<uint> tokens)
        {
            fixed (byte* pixelPtr = pixels)
            fixed (uint* tokenPtr = tokens)
            {
                Native.Image image = Native.ImageOf(pixelPtr, pixels.Length, width, height, format, stride);
                Native.Check(Native.fqgan_tokenizer_encode(_handle, &image, tokenPtr, (UIntPtr)tokens.Length, null));
            }
        }

        /// <summary>Decodes Info.TokenCount ids into packed RGBA8 (Info.RgbaSize bytes).</summary>
        public byte[] Decode(uint[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException(nameof(tokens));
            var rgba = new byte[Info.RgbaSize];
            Decode(tokens, rgba);
            return rgba;
        }

        /// <summary>As Decode, into caller memory of at least Info.RgbaSize bytes.</summary>
        public void Decode(ReadOnlySpan<uint> tokens, Span<byte> rgba)
        {
            fixed (uint* tokenPtr = tokens)
            fixed (byte* rgbaPtr = rgba)
                Native.Check(Native.fqgan_tokenizer_decode(_handle, tokenPtr, (UIntPtr)tokens.Length, rgbaPtr, (UIntPtr)rgba.Length, null));
        }

        /// <summary>Decodes with only the given sub-codebooks (indices into Codebooks); the
        /// others are zeroed, showing what each sub-codebook captures.</summary>
        public byte[] DecodeSubset(uint[] tokens, params uint[] codebooks)
        {
            if (tokens == null) throw new ArgumentNullException(nameof(tokens));
            if (codebooks == null) throw new ArgumentNullException(nameof(codebooks));
            var rgba = new byte[Info.RgbaSize];
            DecodeSubset(tokens, codebooks, rgba);
            return rgba;
        }

        /// <summary>As DecodeSubset, into caller memory of at least Info.RgbaSize bytes.</summary>
        public void DecodeSubset(ReadOnlySpan<uint> tokens, ReadOnlySpan<uint> codebooks, Span<byte> rgba)
        {
            fixed (uint* tokenPtr = tokens)
            fixed (uint* codebookPtr = codebooks)
            fixed (byte* rgbaPtr = rgba)
                Native.Check(Native.fqgan_tokenizer_decode_subset(_handle, tokenPtr, (UIntPtr)tokens.Length,
                    codebookPtr, (UIntPtr)codebooks.Length, rgbaPtr, (UIntPtr)rgba.Length, null));
        }

        /// <summary>Frees the native tokenizer once calls in flight on other threads return.</summary>
        public void Dispose() => _handle.Dispose();
    }

    /// <summary>Owns a fqgan_generator*; frees it once no call uses it any more.</summary>
    public sealed class GeneratorHandle : SafeHandle
    {
        public GeneratorHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            Native.fqgan_generator_free(handle);
            return true;
        }
    }

    /// <summary>A loaded FAR generator: a class id to k token grids, or to images with the
    /// Tokenizer it was trained with.</summary>
    public sealed unsafe class Generator : IDisposable
    {
        private readonly GeneratorHandle _handle;

        /// <summary>Sizes of the model, read once at load.</summary>
        public GeneratorInfo Info { get; }

        /// <summary>Stores the matrix weights as <paramref name="precision"/> (Bf16: half the
        /// memory and about half the time per token on the CPU). No other call on this generator
        /// may run meanwhile. ABI minor 5.</summary>
        public void SetWeightPrecision(WeightPrecision precision)
        {
            Native.Check(Native.fqgan_generator_set_weight_precision(_handle, (int)precision));
        }

        /// <summary>Loads a generator file. device: "cpu", "ndarray", "cuda" or "cuda:N".</summary>
        public static Generator LoadFile(string path, string device = "cpu")
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            byte[] pathUtf8 = Native.ToUtf8(path);
            fixed (byte* pathPtr = pathUtf8)
            {
                IntPtr address = (IntPtr)pathPtr;
                return Load(device, (Native.GeneratorParams* p, out GeneratorHandle h) =>
                    Native.fqgan_generator_load_file((byte*)address, p, out h));
            }
        }

        /// <summary>Loads a generator file, telling progress the tensors read; returning false
        /// from it cancels the load (FqganException with Status.Cancelled). ABI minor 4.</summary>
        public static Generator LoadFile(string path, string device, Progress progress)
        {
            if (progress == null) return LoadFile(path, device);
            if (path == null) throw new ArgumentNullException(nameof(path));
            byte[] pathUtf8 = Native.ToUtf8(path);
            fixed (byte* pathPtr = pathUtf8)
            {
                IntPtr address = (IntPtr)pathPtr;
                return Load(device, (Native.GeneratorParams* p, out GeneratorHandle h) =>
                {
                    IntPtr paramsAddress = (IntPtr)p;
                    GeneratorHandle loaded = null;
                    Status status = Native.RunWithProgress(progress, (callback, userData) =>
                        Native.fqgan_generator_load_file_with_progress(
                            (byte*)address, (Native.GeneratorParams*)paramsAddress, callback, userData, out loaded));
                    h = loaded;
                    return status;
                });
            }
        }

        /// <summary>Loads a generator from the bytes of a generator file (copied by the library).</summary>
        public static Generator LoadMemory(byte[] data, string device = "cpu")
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            return LoadMemory(new ReadOnlySpan<byte>(data), device);
        }

        /// <inheritdoc cref="LoadMemory(byte[], string)"/>
        public static Generator LoadMemory(ReadOnlySpan<byte> data, string device = "cpu")
        {
            fixed (byte* dataPtr = data)
            {
                IntPtr address = (IntPtr)dataPtr;
                UIntPtr size = (UIntPtr)data.Length;
                return Load(device, (Native.GeneratorParams* p, out GeneratorHandle h) =>
                    Native.fqgan_generator_load_memory((void*)address, size, p, out h));
            }
        }

        /// <summary>LoadFile on a worker thread; cancelling the token stops the load between
        /// tensors and the task ends as cancelled. ABI minor 4.</summary>
        public static Task<Generator> LoadFileAsync(string path, string device = "cpu", CancellationToken cancel = default) =>
            Task.Run(() => Native.Cancellable(cancel, progress => LoadFile(path, device, progress)), cancel);

        /// <summary>LoadMemory telling progress the tensors read; returning false from it cancels
        /// the load (FqganException with Status.Cancelled). ABI minor 4.</summary>
        public static Generator LoadMemory(byte[] data, string device, Progress progress)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            return LoadMemory(new ReadOnlySpan<byte>(data), device, progress);
        }

        /// <inheritdoc cref="LoadMemory(byte[], string, Progress)"/>
        public static Generator LoadMemory(ReadOnlySpan<byte> data, string device, Progress progress)
        {
            if (progress == null) return LoadMemory(data, device);
            fixed (byte* dataPtr = data)
            {
                IntPtr address = (IntPtr)dataPtr;
                UIntPtr size = (UIntPtr)data.Length;
                return Load(device, (Native.GeneratorParams* p, out GeneratorHandle h) =>
                {
                    IntPtr paramsAddress = (IntPtr)p;
                    GeneratorHandle loaded = null;
                    Status status = Native.RunWithProgress(progress, (callback, userData) =>
                        Native.fqgan_generator_load_memory_with_progress(
                            (void*)address, size, (Native.GeneratorParams*)paramsAddress, callback, userData, out loaded));
                    h = loaded;
                    return status;
                });
            }
        }

        /// <summary>LoadMemory on a worker thread, cancelled as LoadFileAsync. ABI minor 4.</summary>
        public static Task<Generator> LoadMemoryAsync(byte[] data, string device = "cpu", CancellationToken cancel = default) =>
            Task.Run(() => Native.Cancellable(cancel, progress => LoadMemory(data, device, progress)), cancel);

        /// <summary>Loads the generator built into the library (10 ufoai texture classes, named in
        /// Info.ClassNames; it goes with Tokenizer.LoadBuiltin; ABI minor 2).</summary>
        public static Generator LoadBuiltin(string device = "cpu")
        {
            return Load(device, (Native.GeneratorParams* p, out GeneratorHandle h) =>
                Native.fqgan_generator_load_builtin(p, out h));
        }

        private delegate Status LoadCall(Native.GeneratorParams* p, out GeneratorHandle handle);

        private static Generator Load(string device, LoadCall call)
        {
            if (device == null) throw new ArgumentNullException(nameof(device));
            byte[] deviceUtf8 = Native.ToUtf8(device);
            Native.GeneratorParams p = Native.fqgan_generator_params_default();
            fixed (byte* devicePtr = deviceUtf8)
            {
                p.Device = devicePtr;
                Status status = call(&p, out GeneratorHandle handle);
                if (status != Status.Ok)
                {
                    string message = Native.LastError();
                    handle.Dispose();
                    throw new FqganException(status, message);
                }
                return new Generator(handle);
            }
        }

        private Generator(GeneratorHandle handle)
        {
            _handle = handle;
            var info = new Native.GeneratorInfo { StructSize = (UIntPtr)sizeof(Native.GeneratorInfo) };
            Native.Check(Native.fqgan_generator_get_info(_handle, &info));
            var vocab = new int[info.CodebookCount];
            for (uint i = 0; i < info.CodebookCount; i++)
            {
                uint size;
                Native.Check(Native.fqgan_generator_get_vocab_size(_handle, i, &size));
                vocab[i] = (int)size;
            }
            var classNames = new string[info.ClassCount];
            for (uint label = 0; label < info.ClassCount; label++)
            {
                byte* name;
                Native.Check(Native.fqgan_generator_get_class_name(_handle, label, &name));
                classNames[label] = Native.Utf8(name);
            }
            Info = new GeneratorInfo
            {
                ClassCount = (int)info.ClassCount,
                CodebookCount = (int)info.CodebookCount,
                GridWidth = (int)info.GridWidth,
                GridHeight = (int)info.GridHeight,
                SupportsGuidance = info.SupportsGuidance != 0,
                TokenCount = (int)info.TokenCount,
                VocabSizes = vocab,
                ClassNames = classNames,
                Device = Native.Utf8(info.Device),
            };
        }

        /// <summary>Generates p.Count images of class p.ClassId: p.Count * Info.TokenCount ids,
        /// image after image, each laid out as Tokenizer.Encode returns them.</summary>
        public uint[] Generate(GenerateParams p, Progress progress = null)
        {
            if (p == null) throw new ArgumentNullException(nameof(p));
            var tokens = new uint[(long)p.Count * Info.TokenCount];
            Generate(p, tokens, progress);
            return tokens;
        }

        /// <summary>As Generate, into caller memory of at least p.Count * Info.TokenCount values.</summary>
        public void Generate(GenerateParams p, Span<uint> tokens, Progress progress = null)
        {
            if (p == null) throw new ArgumentNullException(nameof(p));
            Native.GenerateParams native = p.ToNative();
            // Lambdas cannot capture fixed or address-taken locals: they get addresses as IntPtr.
            fixed (uint* tokenPtr = tokens)
            {
                IntPtr nativeAddress = (IntPtr)(&native), address = (IntPtr)tokenPtr;
                UIntPtr length = (UIntPtr)tokens.Length;
                Native.WithProgress(progress, (callback, userData) => Native.fqgan_generate(
                    _handle, (Native.GenerateParams*)nativeAddress, (uint*)address, length, null, callback, userData));
            }
        }

        /// <summary>Prefix completion (ABI minor 3): p.Count images that each keep the top
        /// prefixRows token rows of prefix (one image's tokens, as Tokenizer.Encode returns
        /// them) and continue them.</summary>
        public uint[] Complete(GenerateParams p, uint[] prefix, int prefixRows, Progress progress = null)
        {
            if (p == null) throw new ArgumentNullException(nameof(p));
            if (prefix == null) throw new ArgumentNullException(nameof(prefix));
            if (prefixRows < 0) throw new ArgumentOutOfRangeException(nameof(prefixRows));
            Native.GenerateParams native = p.ToNative();
            var tokens = new uint[(long)p.Count * Info.TokenCount];
            fixed (uint* prefixPtr = prefix)
            fixed (uint* tokenPtr = tokens)
            {
                IntPtr nativeAddress = (IntPtr)(&native), prefixAddress = (IntPtr)prefixPtr, address = (IntPtr)tokenPtr;
                UIntPtr prefixLength = (UIntPtr)prefix.Length, length = (UIntPtr)tokens.Length;
                Native.WithProgress(progress, (callback, userData) => Native.fqgan_generate_completion(
                    _handle, (Native.GenerateParams*)nativeAddress, (uint*)prefixAddress, prefixLength, (uint)prefixRows,
                    (uint*)address, length, null, callback, userData));
            }
            return tokens;
        }

        /// <summary>Generates and decodes with tokenizer: p.Count packed RGBA8 images of the
        /// tokenizer's size, one after the other.</summary>
        /// <summary>Generate on a worker thread; cancelling the token stops it between token
        /// positions and the task ends as cancelled.</summary>
        public Task<uint[]> GenerateAsync(GenerateParams p, CancellationToken cancel = default) =>
            Task.Run(() => Native.Cancellable(cancel, progress => Generate(p, progress)), cancel);

        /// <summary>GenerateImages on a worker thread; cancelling the token stops it between token
        /// positions and the task ends as cancelled.</summary>
        public Task<byte[]> GenerateImagesAsync(Tokenizer tokenizer, GenerateParams p, CancellationToken cancel = default) =>
            Task.Run(() => Native.Cancellable(cancel, progress => GenerateImages(tokenizer, p, progress)), cancel);

        public byte[] GenerateImages(Tokenizer tokenizer, GenerateParams p, Progress progress = null)
        {
            if (tokenizer == null) throw new ArgumentNullException(nameof(tokenizer));
            if (p == null) throw new ArgumentNullException(nameof(p));
            var rgba = new byte[(long)p.Count * tokenizer.Info.RgbaSize];
            GenerateImages(tokenizer, p, rgba, progress);
            return rgba;
        }

        /// <summary>As GenerateImages, into caller memory of at least p.Count * RgbaSize bytes.</summary>
        public void GenerateImages(Tokenizer tokenizer, GenerateParams p, Span<byte> rgba, Progress progress = null)
        {
            if (tokenizer == null) throw new ArgumentNullException(nameof(tokenizer));
            if (p == null) throw new ArgumentNullException(nameof(p));
            Native.GenerateParams native = p.ToNative();
            fixed (byte* rgbaPtr = rgba)
            {
                IntPtr nativeAddress = (IntPtr)(&native), address = (IntPtr)rgbaPtr;
                UIntPtr length = (UIntPtr)rgba.Length;
                Native.WithProgress(progress, (callback, userData) => Native.fqgan_generate_images(
                    _handle, tokenizer.Handle, (Native.GenerateParams*)nativeAddress, (byte*)address, length, null, callback, userData));
            }
        }

        /// <summary>Frees the native generator once calls in flight on other threads return.</summary>
        public void Dispose() => _handle.Dispose();
    }

    /// <summary>.fqt token files in memory.</summary>
    public static unsafe class Fqt
    {
        // A null SafeHandle cannot be marshalled: without a tokenizer, this handle holding NULL
        // is passed, which the library reads as "no check".
        private static readonly TokenizerHandle NoTokenizer = new TokenizerHandle();

        /// <summary>The bytes of a .fqt file holding one image's tokens (as Tokenizer.Encode or
        /// Generator.Generate return them), made with tokenizer.</summary>
        public static byte[] Write(Tokenizer tokenizer, uint[] tokens, FqtCoding coding = FqtCoding.Packed)
        {
            if (tokens == null) throw new ArgumentNullException(nameof(tokens));
            return Write(tokenizer, new ReadOnlySpan<uint>(tokens), coding);
        }

        /// <inheritdoc cref="Write(Tokenizer, uint[], FqtCoding)"/>
        public static byte[] Write(Tokenizer tokenizer, ReadOnlySpan<uint> tokens, FqtCoding coding = FqtCoding.Packed)
        {
            if (tokenizer == null) throw new ArgumentNullException(nameof(tokenizer));
            Native.FqtWriteParams p = Native.fqgan_fqt_write_params_default();
            p.Coding = (int)coding;
            fixed (uint* tokenPtr = tokens)
            {
                UIntPtr size;
                Native.Check(Native.fqgan_fqt_write(tokenizer.Handle, &p, tokenPtr, (UIntPtr)tokens.Length, null, UIntPtr.Zero, &size));
                var bytes = new byte[(long)size];
                fixed (byte* bytePtr = bytes)
                    Native.Check(Native.fqgan_fqt_write(tokenizer.Handle, &p, tokenPtr, (UIntPtr)tokens.Length, bytePtr, size, null));
                return bytes;
            }
        }

        /// <summary>Encodes an image of any size into the bytes of a .fqt file: tiled, each tile
        /// encoded, the alpha plane kept losslessly when any pixel is not opaque (ABI minor 3).
        /// stride: bytes from row to row; 0 means packed. progress sees tiles; false cancels.</summary>
        public static byte[] EncodeImage(Tokenizer tokenizer, ReadOnlySpan<byte> pixels, int width, int height,
            PixelFormat format = PixelFormat.Rgba8, int stride = 0, FqtImageOptions options = null, Progress progress = null)
        {
            if (tokenizer == null) throw new ArgumentNullException(nameof(tokenizer));
            Native.FqtImageParams p = (options ?? new FqtImageOptions()).ToNative();
            fixed (byte* pixelPtr = pixels)
            {
                Native.Image image = Native.ImageOf(pixelPtr, pixels.Length, width, height, format, stride);
                UIntPtr query;
                Native.Check(Native.fqgan_fqt_encode_image(tokenizer.Handle, &image, &p, null, IntPtr.Zero, null, UIntPtr.Zero, &query));
                UIntPtr bound = query;
                var bytes = new byte[(long)bound];
                UIntPtr size = UIntPtr.Zero;
                fixed (byte* bytePtr = bytes)
                {
                    IntPtr imageAddress = (IntPtr)(&image), paramsAddress = (IntPtr)(&p), address = (IntPtr)bytePtr;
                    IntPtr sizeAddress = (IntPtr)(&size);
                    Native.WithProgress(progress, (callback, userData) => Native.fqgan_fqt_encode_image(
                        tokenizer.Handle, (Native.Image*)imageAddress, (Native.FqtImageParams*)paramsAddress,
                        callback, userData, (byte*)address, bound, (UIntPtr*)sizeAddress));
                }
                Array.Resize(ref bytes, (int)size);
                return bytes;
            }
        }

        /// <summary>Decodes the bytes of a .fqt file made with tokenizer into the whole image, its
        /// tiles blended at the seams and its alpha kept (255 without). progress sees tiles.</summary>
        public static Rgba8Image DecodeImage(Tokenizer tokenizer, ReadOnlySpan<byte> fqt, FqtImageOptions options = null,
            Progress progress = null)
        {
            if (tokenizer == null) throw new ArgumentNullException(nameof(tokenizer));
            Native.FqtImageParams p = (options ?? new FqtImageOptions()).ToNative();
            var info = new Native.FqtInfo { StructSize = (UIntPtr)sizeof(Native.FqtInfo) };
            fixed (byte* fqtPtr = fqt)
            {
                Native.Check(Native.fqgan_fqt_read(tokenizer.Handle, fqtPtr, (UIntPtr)fqt.Length, &info, null, UIntPtr.Zero, null));
                var rgba = new byte[(long)info.Width * info.Height * 4];
                fixed (byte* rgbaPtr = rgba)
                {
                    IntPtr fqtAddress = (IntPtr)fqtPtr, paramsAddress = (IntPtr)(&p), address = (IntPtr)rgbaPtr;
                    UIntPtr fqtLength = (UIntPtr)fqt.Length, length = (UIntPtr)rgba.Length;
                    Native.WithProgress(progress, (callback, userData) => Native.fqgan_fqt_decode_image(
                        tokenizer.Handle, (byte*)fqtAddress, fqtLength, (Native.FqtImageParams*)paramsAddress,
                        callback, userData, (byte*)address, length, null));
                }
                return new Rgba8Image { Width = (int)info.Width, Height = (int)info.Height, Pixels = rgba };
            }
        }

        /// <summary>EncodeImage on a worker thread; cancelling the token stops it between batches
        /// of tiles and the task ends as cancelled.</summary>
        public static Task<byte[]> EncodeImageAsync(Tokenizer tokenizer, byte[] pixels, int width, int height,
            PixelFormat format = PixelFormat.Rgba8, FqtImageOptions options = null, CancellationToken cancel = default)
        {
            if (pixels == null) throw new ArgumentNullException(nameof(pixels));
            return Task.Run(() => Native.Cancellable(cancel, progress =>
                EncodeImage(tokenizer, pixels, width, height, format, 0, options, progress)), cancel);
        }

        /// <summary>DecodeImage on a worker thread, as EncodeImageAsync.</summary>
        public static Task<Rgba8Image> DecodeImageAsync(Tokenizer tokenizer, byte[] fqt, FqtImageOptions options = null,
            CancellationToken cancel = default)
        {
            if (fqt == null) throw new ArgumentNullException(nameof(fqt));
            return Task.Run(() => Native.Cancellable(cancel, progress => DecodeImage(tokenizer, fqt, options, progress)), cancel);
        }

        /// <summary>Reads the bytes of a .fqt file. With a tokenizer, a file made by another
        /// model throws (Status.InvalidArgument).</summary>
        public static FqtFile Read(byte[] bytes, Tokenizer tokenizer = null)
        {
            if (bytes == null) throw new ArgumentNullException(nameof(bytes));
            return Read(new ReadOnlySpan<byte>(bytes), tokenizer);
        }

        /// <inheritdoc cref="Read(byte[], Tokenizer)"/>
        public static FqtFile Read(ReadOnlySpan<byte> bytes, Tokenizer tokenizer = null)
        {
            var info = new Native.FqtInfo { StructSize = (UIntPtr)sizeof(Native.FqtInfo) };
            fixed (byte* bytePtr = bytes)
            {
                TokenizerHandle handle = tokenizer?.Handle ?? NoTokenizer;
                Native.Check(Native.fqgan_fqt_read(handle, bytePtr, (UIntPtr)bytes.Length, &info, null, UIntPtr.Zero, null));
                var tokens = new uint[(long)info.TokenCount];
                fixed (uint* tokenPtr = tokens)
                    Native.Check(Native.fqgan_fqt_read(handle, bytePtr, (UIntPtr)bytes.Length, null, tokenPtr, (UIntPtr)tokens.Length, null));
                var sizes = new int[info.CodebookCount];
                for (int i = 0; i < sizes.Length; i++) sizes[i] = (int)info.CodebookSizes[i];
                var fingerprint = new byte[16];
                for (int i = 0; i < 16; i++) fingerprint[i] = info.Fingerprint[i];
                return new FqtFile
                {
                    Info = new FqtInfo
                    {
                        Width = (int)info.Width,
                        Height = (int)info.Height,
                        TileSize = (int)info.TileSize,
                        TileOverlap = (int)info.TileOverlap,
                        TilesX = (int)info.TilesX,
                        TilesY = (int)info.TilesY,
                        Grid = (int)info.Grid,
                        CodebookSizes = sizes,
                        TokenCount = (int)info.TokenCount,
                        HasAlpha = info.HasAlpha != 0,
                        Coding = (FqtCoding)info.Coding,
                        Fingerprint = fingerprint,
                    },
                    Tokens = tokens,
                };
            }
        }
    }

    /// <summary>The C API, one to one. The progress callback is a static method marked
    /// [AOT.MonoPInvokeCallback], as IL2CPP requires, with per-call state in user_data.</summary>
    internal static unsafe class Native
    {
#if (UNITY_IOS || UNITY_WEBGL) && !UNITY_EDITOR
        // iOS and WebGL link the static library into the player: symbols live in the executable.
        private const string Lib = "__Internal";
#else
        // Resolves to fqgan.dll, libfqgan.so or libfqgan.dylib.
        private const string Lib = "fqgan";
#endif

        [StructLayout(LayoutKind.Sequential)]
        internal struct TokenizerParams
        {
            public UIntPtr StructSize;
            public byte* Device;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct TokenizerInfo
        {
            public UIntPtr StructSize;
            public uint CodebookCount;
            public uint ImageWidth;
            public uint ImageHeight;
            public uint GridWidth;
            public uint GridHeight;
            public uint Downsample;
            public UIntPtr TokenCount;
            public UIntPtr RgbaSize;
            public byte* Device;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct CodebookInfo
        {
            public UIntPtr StructSize;
            public byte* Name;
            public uint Size;
            public uint Dim;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct Image
        {
            public byte* Pixels;
            public uint Width;
            public uint Height;
            public UIntPtr Stride;
            public int Format;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct GeneratorParams
        {
            public UIntPtr StructSize;
            public byte* Device;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct GeneratorInfo
        {
            public UIntPtr StructSize;
            public uint ClassCount;
            public uint CodebookCount;
            public uint GridWidth;
            public uint GridHeight;
            public uint SupportsGuidance;
            public UIntPtr TokenCount;
            public byte* Device;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct GenerateParams
        {
            public UIntPtr StructSize;
            public ulong Seed;
            public uint ClassId;
            public uint Count;
            public float CfgScale;
            public float Temperature;
            public float TopP;
            public uint TopK;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct FqtWriteParams
        {
            public UIntPtr StructSize;
            public uint Width;
            public uint Height;
            public uint Overlap;
            public int Coding;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct FqtImageParams
        {
            public UIntPtr StructSize;
            public uint Overlap;
            public int Coding;
            public uint BottomUp;
            public ulong MaxWorkPixels;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct FqtInfo
        {
            public UIntPtr StructSize;
            public uint Width;
            public uint Height;
            public uint TileSize;
            public uint TileOverlap;
            public uint TilesX;
            public uint TilesY;
            public uint Grid;
            public uint CodebookCount;
            public fixed uint CodebookSizes[16];
            public UIntPtr TokenCount;
            public uint HasAlpha;
            public int Coding;
            public fixed byte Fingerprint[16];
        }

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int ProgressCallback(IntPtr userData, uint done, uint total);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void LogCallback(IntPtr userData, int level, byte* message);

        [DllImport(Lib)] internal static extern byte* fqgan_version();
        [DllImport(Lib)] internal static extern uint fqgan_abi_version();
        [DllImport(Lib)] internal static extern Status fqgan_set_num_threads(uint threads);
        [DllImport(Lib)] internal static extern uint fqgan_get_num_threads();
        [DllImport(Lib)] internal static extern byte* fqgan_last_error();
        [DllImport(Lib)] internal static extern TokenizerParams fqgan_tokenizer_params_default();
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_load_file(byte* path, TokenizerParams* p, out TokenizerHandle tokenizer);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_load_memory(void* data, UIntPtr size, TokenizerParams* p, out TokenizerHandle tokenizer);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_load_file_with_progress(byte* path, TokenizerParams* p, ProgressCallback progress, IntPtr userData, out TokenizerHandle tokenizer);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_load_memory_with_progress(void* data, UIntPtr size, TokenizerParams* p, ProgressCallback progress, IntPtr userData, out TokenizerHandle tokenizer);
        [DllImport(Lib)] internal static extern void fqgan_tokenizer_free(IntPtr tokenizer);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_get_info(TokenizerHandle tokenizer, TokenizerInfo* info);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_get_codebook(TokenizerHandle tokenizer, uint index, CodebookInfo* info);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_encode(TokenizerHandle tokenizer, Image* image, uint* tokens, UIntPtr tokensCapacity, UIntPtr* tokensRequired);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_decode(TokenizerHandle tokenizer, uint* tokens, UIntPtr tokenCount, byte* rgba, UIntPtr rgbaCapacity, UIntPtr* rgbaRequired);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_decode_subset(TokenizerHandle tokenizer, uint* tokens, UIntPtr tokenCount, uint* codebooks, UIntPtr codebookCount, byte* rgba, UIntPtr rgbaCapacity, UIntPtr* rgbaRequired);
        [DllImport(Lib)] internal static extern GeneratorParams fqgan_generator_params_default();
        [DllImport(Lib)] internal static extern GenerateParams fqgan_generate_params_default();
        [DllImport(Lib)] internal static extern Status fqgan_generator_load_file(byte* path, GeneratorParams* p, out GeneratorHandle generator);
        [DllImport(Lib)] internal static extern Status fqgan_generator_load_memory(void* data, UIntPtr size, GeneratorParams* p, out GeneratorHandle generator);
        [DllImport(Lib)] internal static extern Status fqgan_generator_load_file_with_progress(byte* path, GeneratorParams* p, ProgressCallback progress, IntPtr userData, out GeneratorHandle generator);
        [DllImport(Lib)] internal static extern Status fqgan_generator_load_memory_with_progress(void* data, UIntPtr size, GeneratorParams* p, ProgressCallback progress, IntPtr userData, out GeneratorHandle generator);
        [DllImport(Lib)] internal static extern void fqgan_generator_free(IntPtr generator);
        [DllImport(Lib)] internal static extern Status fqgan_generator_get_info(GeneratorHandle generator, GeneratorInfo* info);
        [DllImport(Lib)] internal static extern Status fqgan_generator_set_weight_precision(GeneratorHandle generator, int precision);
        [DllImport(Lib)] internal static extern Status fqgan_generator_get_vocab_size(GeneratorHandle generator, uint index, uint* size);
        [DllImport(Lib)] internal static extern Status fqgan_generator_get_class_name(GeneratorHandle generator, uint label, byte** name);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_load_builtin(TokenizerParams* p, out TokenizerHandle tokenizer);
        [DllImport(Lib)] internal static extern Status fqgan_generator_load_builtin(GeneratorParams* p, out GeneratorHandle generator);
        [DllImport(Lib)] internal static extern Status fqgan_generate(GeneratorHandle generator, GenerateParams* p, uint* tokens, UIntPtr tokensCapacity, UIntPtr* tokensRequired, ProgressCallback progress, IntPtr userData);
        [DllImport(Lib)] internal static extern Status fqgan_generate_images(GeneratorHandle generator, TokenizerHandle tokenizer, GenerateParams* p, byte* rgba, UIntPtr rgbaCapacity, UIntPtr* rgbaRequired, ProgressCallback progress, IntPtr userData);
        [DllImport(Lib)] internal static extern FqtWriteParams fqgan_fqt_write_params_default();
        [DllImport(Lib)] internal static extern Status fqgan_fqt_write(TokenizerHandle tokenizer, FqtWriteParams* p, uint* tokens, UIntPtr tokenCount, byte* bytes, UIntPtr bytesCapacity, UIntPtr* bytesRequired);
        [DllImport(Lib)] internal static extern Status fqgan_fqt_read(TokenizerHandle tokenizer, byte* bytes, UIntPtr size, FqtInfo* info, uint* tokens, UIntPtr tokensCapacity, UIntPtr* tokensRequired);
        [DllImport(Lib)] internal static extern Status fqgan_generate_completion(GeneratorHandle generator, GenerateParams* p, uint* prefix, UIntPtr prefixCount, uint prefixRows, uint* tokens, UIntPtr tokensCapacity, UIntPtr* tokensRequired, ProgressCallback progress, IntPtr userData);
        [DllImport(Lib)] internal static extern uint fqgan_device_count();
        [DllImport(Lib)] internal static extern Status fqgan_device_name(uint index, byte** name);
        [DllImport(Lib)] internal static extern Status fqgan_set_log_callback(LogCallback callback, int maxLevel, IntPtr userData);
        [DllImport(Lib)] internal static extern FqtImageParams fqgan_fqt_image_params_default();
        [DllImport(Lib)] internal static extern Status fqgan_fqt_encode_image(TokenizerHandle tokenizer, Image* image, FqtImageParams* p, ProgressCallback progress, IntPtr userData, byte* bytes, UIntPtr bytesCapacity, UIntPtr* bytesSize);
        [DllImport(Lib)] internal static extern Status fqgan_fqt_decode_image(TokenizerHandle tokenizer, byte* fqt, UIntPtr fqtSize, FqtImageParams* p, ProgressCallback progress, IntPtr userData, byte* rgba, UIntPtr rgbaCapacity, UIntPtr* rgbaRequired);

        /// <summary>An image view over pinned pixels, after checking that they hold a
        /// width x height image of format with stride (0: packed).</summary>
        internal static Image ImageOf(byte* pixels, int length, int width, int height, PixelFormat format, int stride)
        {
            if (width < 0) throw new ArgumentOutOfRangeException(nameof(width));
            if (height < 0) throw new ArgumentOutOfRangeException(nameof(height));
            if (stride < 0) throw new ArgumentOutOfRangeException(nameof(stride));
            int bytesPerPixel = format == PixelFormat.Rgb8 ? 3 : 4;
            long rowStride = stride != 0 ? stride : (long)width * bytesPerPixel;
            // The native side reads stride * (height - 1) + width * bytesPerPixel bytes.
            long needed = height == 0 ? 0 : rowStride * (height - 1) + (long)width * bytesPerPixel;
            if (length < needed)
                throw new ArgumentException($"pixels has {length} bytes; a {width}x{height} {format} image with stride {rowStride} needs {needed}", "pixels");
            return new Image { Pixels = pixels, Width = (uint)width, Height = (uint)height, Stride = (UIntPtr)rowStride, Format = (int)format };
        }

        /// <summary>The state of one call with a progress callback, reached through user_data.</summary>
        private sealed class ProgressState
        {
            internal Progress Progress;
            internal Exception Error;
        }

        // One delegate for the life of the program: the native side holds its function pointer
        // only during a call, and a static field keeps it from being collected.
        private static readonly ProgressCallback OnProgressCallback = OnProgress;

        [AOT.MonoPInvokeCallback(typeof(ProgressCallback))]
        private static int OnProgress(IntPtr userData, uint done, uint total)
        {
            var state = (ProgressState)GCHandle.FromIntPtr(userData).Target;
            try
            {
                return state.Progress((int)done, (int)total) ? 0 : 1;
            }
            catch (Exception e)
            {
                // Exceptions must not unwind through native frames: carry it over, then cancel.
                state.Error = e;
                return 1;
            }
        }

        internal delegate Status ProgressCall(ProgressCallback callback, IntPtr userData);

        /// <summary>Runs a call that takes a progress callback; rethrows the callback's exception,
        /// else throws for a failed status.</summary>
        internal static void WithProgress(Progress progress, ProgressCall call)
        {
            Check(RunWithProgress(progress, call));
        }

        /// <summary>As WithProgress, returning the status instead of throwing for it (for calls
        /// whose caller releases a half-made handle first).</summary>
        internal static Status RunWithProgress(Progress progress, ProgressCall call)
        {
            if (progress == null) return call(null, IntPtr.Zero);
            var state = new ProgressState { Progress = progress };
            GCHandle handle = GCHandle.Alloc(state);
            try
            {
                Status status = call(OnProgressCallback, GCHandle.ToIntPtr(handle));
                if (state.Error != null) ExceptionDispatchInfo.Capture(state.Error).Throw();
                return status;
            }
            finally
            {
                handle.Free();
            }
        }

        /// <summary>Runs work with a progress callback that cancels when the token does, and
        /// turns that cancellation into an OperationCanceledException for the token.</summary>
        internal static T Cancellable<T>(CancellationToken cancel, Func<Progress, T> work)
        {
            try
            {
                return work((done, total) => !cancel.IsCancellationRequested);
            }
            catch (FqganException e) when (e.Status == Status.Cancelled && cancel.IsCancellationRequested)
            {
                throw new OperationCanceledException(cancel);
            }
        }

        /// <summary>Throws for a failed status, with the message of this thread's last call.</summary>
        internal static void Check(Status status)
        {
            if (status != Status.Ok) throw new FqganException(status, LastError());
        }

        internal static string LastError() => Utf8(fqgan_last_error());

        /// <summary>A NUL-terminated UTF-8 string owned by the library, copied.</summary>
        internal static string Utf8(byte* text)
        {
            if (text == null) return null;
            int length = 0;
            while (text[length] != 0) length++;
            return Encoding.UTF8.GetString(text, length);
        }

        internal static byte[] ToUtf8(string text)
        {
            if (text.IndexOf('\0') >= 0) throw new ArgumentException("contains a NUL character", nameof(text));
            return Encoding.UTF8.GetBytes(text + "\0");
        }
    }
}
