// Exercises bindings/csharp/Fqgan.cs; run by tests/ffi.rs under Mono.
//
//   mono BindingTest.exe MODEL.safetensors IN.rgba
using System;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using Fqgan;

static class BindingTest
{
    static int failures;

    static void Check(bool condition, string what)
    {
        if (!condition)
        {
            Console.Error.WriteLine("failed: " + what);
            failures++;
        }
    }

    // `body` must throw FqganException with `status` and a message containing `needle`.
    static void ExpectError(Status status, string needle, Action body, string what)
    {
        try
        {
            body();
            Check(false, what + ": no exception");
        }
        catch (FqganException e)
        {
            Check(e.Status == status && e.Message.Contains(needle),
                $"{what}: got {e.Status} \"{e.Message}\", expected {status} with \"{needle}\"");
        }
    }

    static int Main(string[] args)
    {
        Library.CheckAbi();
        Check(Library.Version.Split('.').Length == 3, "version is MAJOR.MINOR.PATCH");

        ExpectError(Status.Io, "missing.safetensors", () => Tokenizer.LoadFile("missing.safetensors"), "missing file");
        ExpectError(Status.InvalidArgument, "`params->device`", () => Tokenizer.LoadFile(args[0], "tpu"), "bad device");
        ExpectError(Status.InvalidModel, "not a valid safetensors", () => Tokenizer.LoadMemory(new byte[64]), "garbage model");
        ExpectError(Status.InvalidArgument, "`size` is 0", () => Tokenizer.LoadMemory(new byte[0]), "empty model");
        int reported = 0, tensors = 0;
        using (Tokenizer.LoadFile(args[0], "cpu", (done, total) => { reported = done; tensors = total; return true; })) { }
        Check(tensors > 10 && reported == tensors, "a load reports every tensor read");
        ExpectError(Status.Cancelled, "cancelled", () => Tokenizer.LoadFile(args[0], "cpu", (done, total) => done < 2), "cancelled load");
        using (var loaded = Tokenizer.LoadFileAsync(args[0]).Result)
            Check(loaded.Info.CodebookCount == 2, "async load");
        try
        {
            Tokenizer.LoadFileAsync(args[0], "cpu", new System.Threading.CancellationToken(true)).Wait();
            Check(false, "a cancelled async load throws");
        }
        catch (AggregateException e)
        {
            Check(e.InnerException is OperationCanceledException, "a cancelled async load ends as cancelled");
        }
        byte[] model = File.ReadAllBytes(args[0]);
        int fromMemory = 0;
        using (Tokenizer.LoadMemory(model, "cpu", (done, total) => { fromMemory = done; return true; })) { }
        Check(fromMemory == tensors, "a load from memory reports every tensor read");
        ExpectError(Status.Cancelled, "cancelled", () => Tokenizer.LoadMemory(model, "cpu", (done, total) => false), "cancelled memory load");
        using (var loaded = Tokenizer.LoadMemoryAsync(model).Result)
            Check(loaded.Info.CodebookCount == 2, "async load from memory");

        byte[] rgba = File.ReadAllBytes(args[1]);
        using (var tok = Tokenizer.LoadMemory(File.ReadAllBytes(args[0])))
        {
            TokenizerInfo info = tok.Info;
            Check(info.CodebookCount == 2 && info.ImageWidth == 64 && info.GridWidth == 8, "info sizes");
            Check(info.TokenCount == 128 && info.RgbaSize == rgba.Length && info.Device == "cpu", "info counts");
            Check(tok.Codebooks.Select(c => c.Name).SequenceEqual(new[] { "vis", "sem" }), "codebook names");
            Check(tok.Codebooks.All(c => c.Size == 1024), "codebook sizes");

            uint[] tokens = tok.Encode(rgba, 64, 64);
            Check(tokens.Length == 128 && tokens.All(t => t < 1024), "token ids in range");

            // Span overloads agree with the array ones; RGB8 with a padded stride too.
            const int stride = 64 * 3 + 3;
            var rgb = new byte[stride * 64];
            for (int i = 0; i < 64 * 64; i++)
                Array.Copy(rgba, i * 4, rgb, (i / 64) * stride + (i % 64) * 3, 3);
            Span<uint> fromRgb = new uint[128];
            tok.Encode(rgb, 64, 64, PixelFormat.Rgb8, stride, fromRgb);
            Check(fromRgb.SequenceEqual(tokens), "RGB8 with stride gives the RGBA8 tokens");
            byte[] decoded = tok.Decode(tokens);
            Span<byte> into = new byte[info.RgbaSize];
            tok.Decode(tokens, into);
            Check(into.SequenceEqual(decoded), "span decode equals array decode");
            Check(!tok.DecodeSubset(tokens, 1).SequenceEqual(decoded), "decoding one sub-codebook differs");
            Check(tok.DecodeSubset(tokens, 0, 1).SequenceEqual(decoded), "decoding both sub-codebooks is decoding");

            ExpectError(Status.BufferTooSmall, "`tokens_capacity` is 127",
                () => tok.Encode(rgba, 64, 64, PixelFormat.Rgba8, 0, new uint[127]), "short token buffer");
            ExpectError(Status.InvalidArgument, "32x32", () => tok.Encode(rgba, 32, 32), "wrong image size");
            ExpectError(Status.InvalidArgument, "`image->format` is 9",
                () => tok.Encode(rgba, 64, 64, (PixelFormat)9), "unknown pixel format");
            uint[] bad = (uint[])tokens.Clone();
            bad[127] = 1024;
            ExpectError(Status.InvalidArgument, "`tokens[127]` is 1024", () => tok.Decode(bad), "token id out of range");
            ExpectError(Status.InvalidArgument, "`token_count` is 3", () => tok.Decode(new uint[3]), "short token grid");
            ExpectError(Status.BufferTooSmall, "`rgba_capacity`", () => tok.Decode(tokens, new byte[10]), "short rgba buffer");
            ExpectError(Status.InvalidArgument, "`codebooks[0]` is 2", () => tok.DecodeSubset(tokens, 2), "no such codebook");
            try
            {
                tok.Encode(new byte[10], 64, 64);
                Check(false, "a too short pixel array must throw");
            }
            catch (ArgumentException e)
            {
                Check(e.ParamName == "pixels", "the short pixel array is named");
            }

            // Whole images (ABI minor 3): a 100x90 RGBA image made of the input with a real
            // alpha plane; bottom-up rows (Texture2D order) both ways leave every row in place.
            const int w = 100, h = 90;
            var big = new byte[w * h * 4];
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    Array.Copy(rgba, ((y % 64) * 64 + x % 64) * 4, big, (y * w + x) * 4, 3);
                    big[(y * w + x) * 4 + 3] = (byte)(x < 50 ? 255 : y * 2);
                }
            var upsideDown = new byte[big.Length];
            for (int y = 0; y < h; y++) Array.Copy(big, y * w * 4, upsideDown, (h - 1 - y) * w * 4, w * 4);
            int tiles = 0;
            byte[] fqt = Fqt.EncodeImage(tok, big, w, h, progress: (done, total) => { tiles = total; return true; });
            FqtInfo fqtInfo = Fqt.Read(fqt, tok).Info;
            Check(fqtInfo.Width == w && fqtInfo.Height == h && fqtInfo.HasAlpha && tiles == fqtInfo.TilesX * fqtInfo.TilesY,
                "whole-image header and tile progress");
            var bottomUp = new FqtImageOptions { BottomUp = true };
            Check(Fqt.EncodeImage(tok, upsideDown, w, h, options: bottomUp).SequenceEqual(fqt), "bottom-up input, same file");
            Rgba8Image whole = Fqt.DecodeImage(tok, fqt);
            Rgba8Image wholeUp = Fqt.DecodeImage(tok, fqt, bottomUp);
            Check(whole.Width == w && whole.Height == h && whole.Pixels.Length == big.Length, "decoded size");
            Check(Enumerable.Range(0, w * h).All(i => whole.Pixels[i * 4 + 3] == big[i * 4 + 3]), "alpha is lossless");
            Check(Enumerable.Range(0, h).All(y => whole.Pixels.Skip(y * w * 4).Take(w * 4)
                .SequenceEqual(wholeUp.Pixels.Skip((h - 1 - y) * w * 4).Take(w * 4))), "bottom-up output rows");
            ExpectError(Status.Cancelled, "cancelled", () => Fqt.DecodeImage(tok, fqt, progress: (d, t) => false), "cancel");
            Check(Fqt.DecodeImageAsync(tok, fqt).Result.Pixels.SequenceEqual(whole.Pixels), "async decode");
            Check(Fqt.EncodeImageAsync(tok, big, w, h).Result.SequenceEqual(fqt), "async encode");
            try
            {
                Fqt.DecodeImageAsync(tok, fqt, null, new System.Threading.CancellationToken(true)).Wait();
                Check(false, "a cancelled token must cancel the task");
            }
            catch (AggregateException e)
            {
                Check(e.InnerException is OperationCanceledException, "cancelled task: " + e.InnerException);
            }

            // Devices, "auto" and the log (ABI minor 3).
            string[] devices = Library.Devices;
            Check(devices.Length >= 2 && devices[0] == "cpu" && devices[1] == "ndarray", "device list");
            var logged = new System.Collections.Concurrent.ConcurrentQueue<string>();
            Library.SetLog((level, message) => logged.Enqueue(message));
            using (Tokenizer.LoadFile(args[0], "auto")) { }
            Library.SetLog(null);
            Check(logged.Any(m => m.Contains("loaded a tokenizer from")), "a load is logged");
            int seen = logged.Count;
            using (Tokenizer.LoadFile(args[0], "auto")) { }
            Check(logged.Count == seen, "silent after SetLog(null)");

            // Eight threads share the tokenizer and agree with one thread.
            var results = new uint[8][];
            Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => results[i] = tok.Encode(rgba, 64, 64));
            Check(results.All(r => r.SequenceEqual(tokens)), "8 threads give the single-thread tokens");

            tok.Dispose();
            try
            {
                tok.Encode(rgba, 64, 64);
                Check(false, "a disposed tokenizer must throw");
            }
            catch (ObjectDisposedException)
            {
            }
        }

        if (failures > 0) Console.Error.WriteLine($"{failures} checks failed");
        else Console.WriteLine("BindingTest: all checks passed");
        return failures > 0 ? 1 : 0;
    }
}
