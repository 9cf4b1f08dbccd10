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
// Failures throw FqganException (Status + the library's message). A Tokenizer may be used from
// many threads at once; after Dispose the native tokenizer is freed once calls in flight return
// (SafeHandle reference counting).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

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
    }

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
            if (width < 0) throw new ArgumentOutOfRangeException(nameof(width));
            if (height < 0) throw new ArgumentOutOfRangeException(nameof(height));
            if (stride < 0) throw new ArgumentOutOfRangeException(nameof(stride));
            int bytesPerPixel = format == PixelFormat.Rgb8 ? 3 : 4;
            long rowStride = stride != 0 ? stride : (long)width * bytesPerPixel;
            // The native side reads stride * (height - 1) + width * bytesPerPixel bytes.
            long needed = height == 0 ? 0 : rowStride * (height - 1) + (long)width * bytesPerPixel;
            if (pixels.Length < needed)
                throw new ArgumentException($"pixels has {pixels.Length} bytes; a {width}x{height} {format} image with stride {rowStride} needs {needed}", nameof(pixels));
            fixed (byte* pixelPtr = pixels)
            fixed (uint* tokenPtr = tokens)
            {
                var image = new Native.Image
                {
                    Pixels = pixelPtr,
                    Width = (uint)width,
                    Height = (uint)height,
                    Stride = (UIntPtr)rowStride,
                    Format = (int)format,
                };
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

    /// <summary>The C API, one to one. Callbacks added later (progress, cancel) must be static
    /// methods marked [AOT.MonoPInvokeCallback] for IL2CPP, with state passed via user_data.</summary>
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

        [DllImport(Lib)] internal static extern byte* fqgan_version();
        [DllImport(Lib)] internal static extern uint fqgan_abi_version();
        [DllImport(Lib)] internal static extern byte* fqgan_last_error();
        [DllImport(Lib)] internal static extern TokenizerParams fqgan_tokenizer_params_default();
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_load_file(byte* path, TokenizerParams* p, out TokenizerHandle tokenizer);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_load_memory(void* data, UIntPtr size, TokenizerParams* p, out TokenizerHandle tokenizer);
        [DllImport(Lib)] internal static extern void fqgan_tokenizer_free(IntPtr tokenizer);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_get_info(TokenizerHandle tokenizer, TokenizerInfo* info);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_get_codebook(TokenizerHandle tokenizer, uint index, CodebookInfo* info);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_encode(TokenizerHandle tokenizer, Image* image, uint* tokens, UIntPtr tokensCapacity, UIntPtr* tokensRequired);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_decode(TokenizerHandle tokenizer, uint* tokens, UIntPtr tokenCount, byte* rgba, UIntPtr rgbaCapacity, UIntPtr* rgbaRequired);
        [DllImport(Lib)] internal static extern Status fqgan_tokenizer_decode_subset(TokenizerHandle tokenizer, uint* tokens, UIntPtr tokenCount, uint* codebooks, UIntPtr codebookCount, byte* rgba, UIntPtr rgbaCapacity, UIntPtr* rgbaRequired);

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
