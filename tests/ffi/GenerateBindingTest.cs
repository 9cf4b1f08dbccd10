// Exercises generation and .fqt files through bindings/csharp/Fqgan.cs; run by tests/ffi.rs
// under Mono.
//
//   mono GenerateBindingTest.exe FAR.safetensors TOKENIZER.safetensors OTHER_TOKENIZER.safetensors OUT_DIR
//
// The same pair and parameters as tests/ffi/generate_test.c (class 3, 2 images, seed 7,
// top_p 0.9); writes OUT_DIR/tokens.u32 and OUT_DIR/images.rgba for the Rust side to compare.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using Fqgan;

static class GenerateBindingTest
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
        ExpectError(Status.Io, "missing.safetensors", () => Generator.LoadFile("missing.safetensors"), "missing file");
        ExpectError(Status.InvalidModel, "<memory>", () => Generator.LoadMemory(new byte[64]), "garbage model");
        int tensors = 0;
        using (Generator.LoadFile(args[0], "cpu", (done, total) => { tensors = done; return true; })) { }
        Check(tensors > 10, "a generator load reports the tensors read");
        ExpectError(Status.Cancelled, "cancelled", () => Generator.LoadFile(args[0], "cpu", (done, total) => false), "cancelled generator load");
        byte[] model = File.ReadAllBytes(args[0]);
        int fromMemory = 0;
        using (Generator.LoadMemory(model, "cpu", (done, total) => { fromMemory = done; return true; })) { }
        Check(fromMemory == tensors, "a generator load from memory reports the tensors read");
        ExpectError(Status.Cancelled, "cancelled", () => Generator.LoadMemory(model, "cpu", (done, total) => done < 2), "cancelled memory load");
        using (var loaded = Generator.LoadFileAsync(args[0]).Result)
            Check(loaded.Info.TokenCount > 0, "async generator load");
        using (var loaded = Generator.LoadMemoryAsync(model).Result)
            Check(loaded.Info.TokenCount > 0, "async generator load from memory");
        try
        {
            Generator.LoadFileAsync(args[0], "cpu", new System.Threading.CancellationToken(true)).Wait();
            Check(false, "a cancelled async generator load throws");
        }
        catch (AggregateException e)
        {
            Check(e.InnerException is OperationCanceledException, "a cancelled async generator load ends as cancelled");
        }

        using (var gen = Generator.LoadMemory(File.ReadAllBytes(args[0])))
        using (var tok = Tokenizer.LoadFile(args[1]))
        using (var other = Tokenizer.LoadFile(args[2]))
        {
            GeneratorInfo info = gen.Info;
            Check(info.ClassCount == 10 && info.CodebookCount == 2 && info.GridWidth == 4 && info.TokenCount == 32, "info sizes");
            Check(info.SupportsGuidance && info.Device == "cpu" && info.VocabSizes.SequenceEqual(new[] { 256, 256 }), "info");

            var p = new GenerateParams { ClassId = 3, Count = 2, Seed = 7, TopP = 0.9f };
            Check(p.CfgScale == 2f && p.Temperature == 1f && p.TopK == 0, "defaults are the official sampling");
            var calls = new List<int>();
            uint[] tokens = gen.Generate(p, (done, total) =>
            {
                calls.Add(done);
                return total == 16;
            });
            Check(calls.SequenceEqual(Enumerable.Range(1, 16)), "progress reports every position in order");
            Span<uint> into = new uint[64];
            gen.Generate(p, into);
            Check(into.SequenceEqual(tokens), "span overload gives the same tokens");

            ExpectError(Status.Cancelled, "cancelled", () => gen.Generate(p, (done, total) => done < 4), "cancel");
            try
            {
                // A block body: Mono's mcs emits invalid IL for a throw-expression lambda.
                gen.Generate(p, (done, total) => { throw new InvalidOperationException("from the callback"); });
                Check(false, "an exception in the callback must come back");
            }
            catch (InvalidOperationException e)
            {
                Check(e.Message == "from the callback", "the callback's own exception");
            }
            ExpectError(Status.InvalidArgument, "`params->class_id` is 10",
                () => gen.Generate(new GenerateParams { ClassId = 10 }), "class out of range");
            ExpectError(Status.InvalidArgument, "`params->top_p` is 0",
                () => gen.Generate(new GenerateParams { TopP = 0 }), "top_p 0");
            ExpectError(Status.BufferTooSmall, "`tokens_capacity` is 63", () => gen.Generate(p, new uint[63]), "short buffer");
            ExpectError(Status.InvalidArgument, "does not match", () => gen.GenerateImages(other, p), "mismatched tokenizer");

            byte[] images = gen.GenerateImages(tok, p, (done, total) => true);
            Check(images.Length == 2 * tok.Info.RgbaSize, "image bytes");
            Check(tok.Decode(tokens.Take(32).ToArray()).SequenceEqual(images.Take(tok.Info.RgbaSize)), "images are decoded tokens");

            // Callbacks on several threads at once each reach their own delegate.
            var counts = new int[4];
            Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            {
                uint[] mine = gen.Generate(p, (done, total) => { counts[i]++; return true; });
                Check(mine.SequenceEqual(tokens), "threads agree");
            });
            Check(counts.All(c => c == 16), "each thread's callback ran 16 times");

            uint[] first = tokens.Take(32).ToArray();
            foreach (FqtCoding coding in new[] { FqtCoding.Packed, FqtCoding.Entropy })
            {
                byte[] bytes = Fqt.Write(tok, first, coding);
                FqtFile file = Fqt.Read(bytes, tok);
                Check(file.Tokens.SequenceEqual(first) && file.Info.Coding == coding, "fqt round trip");
                Check(file.Info.Width == 64 && file.Info.TilesX == 1 && file.Info.Grid == 4, "fqt info");
                Check(file.Info.CodebookSizes.SequenceEqual(new[] { 256, 256 }) && !file.Info.HasAlpha, "fqt codebooks");
                Check(Fqt.Read(bytes).Tokens.SequenceEqual(first), "fqt read without a tokenizer");
                ExpectError(Status.InvalidArgument, "made by model", () => Fqt.Read(bytes, other), "other model");
            }
            ExpectError(Status.InvalidArgument, "not a .fqt file", () => Fqt.Read(new byte[100]), "garbage fqt");
            ExpectError(Status.InvalidArgument, "`size` is 0", () => Fqt.Read(new byte[0]), "empty fqt");

            Check(gen.Info.ClassNames.Count == 10 && gen.Info.ClassNames[3] == "3", "unnamed classes read as labels");
            using (var builtin = Generator.LoadBuiltin())
            using (var builtinTok = Tokenizer.LoadBuiltin())
            {
                Check(builtin.Info.ClassNames.Contains("nature"), "built-in class names");
                var one = new GenerateParams { Count = 1 };
                Check(builtin.GenerateImages(builtinTok, one).Length == 64 * 64 * 4, "built-in pair generates");
                builtin.SetWeightPrecision(WeightPrecision.Bf16);
                Check(builtin.GenerateImages(builtinTok, one).Length == 64 * 64 * 4, "built-in pair generates with bf16 weights");
                ExpectError(Status.InvalidArgument, "`precision` is 9", () => builtin.SetWeightPrecision((WeightPrecision)9), "bad precision");
            }

            File.WriteAllBytes(Path.Combine(args[3], "tokens.u32"), tokens.SelectMany(BitConverter.GetBytes).ToArray());
            // Async versions: the same tokens, and a cancelled token cancels the task.
            Check(gen.GenerateAsync(p).Result.SequenceEqual(tokens), "GenerateAsync gives the same tokens");
            using (var source = new System.Threading.CancellationTokenSource())
            {
                source.Cancel();
                try
                {
                    gen.GenerateImagesAsync(tok, p, source.Token).Wait();
                    Check(false, "a cancelled token must cancel generation");
                }
                catch (AggregateException e)
                {
                    Check(e.InnerException is OperationCanceledException, "cancelled generation: " + e.InnerException);
                }
            }
            // Non-default sampling, for the Rust side to reproduce.
            var sampled = new GenerateParams { ClassId = 5, Count = 2, Seed = 11, CfgScale = 1.5f, Temperature = 1.7f, TopK = 9, TopP = 0.8f };
            File.WriteAllBytes(Path.Combine(args[3], "sampled.u32"), gen.Generate(sampled).SelectMany(BitConverter.GetBytes).ToArray());
            // Prefix completion: the first image's top 2 token rows, continued in both images.
            int positions = 0;
            uint[] completed = gen.Complete(p, tokens.Take(32).ToArray(), 2, (done, total) => { positions = total; return true; });
            Check(positions == 8, "completion progress counts the generated positions");
            ExpectError(Status.InvalidArgument, "`prefix_rows` is 4", () => gen.Complete(p, tokens.Take(32).ToArray(), 4), "all rows kept");
            File.WriteAllBytes(Path.Combine(args[3], "completed.u32"), completed.SelectMany(BitConverter.GetBytes).ToArray());
            File.WriteAllBytes(Path.Combine(args[3], "images.rgba"), images);
        }

        if (failures > 0) Console.Error.WriteLine($"{failures} checks failed");
        else Console.WriteLine("GenerateBindingTest: all checks passed");
        return failures > 0 ? 1 : 0;
    }
}
