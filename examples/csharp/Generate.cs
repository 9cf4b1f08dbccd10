// Generates an image of a class with a FAR generator and its tokenizer, printing progress, and
// saves it as a binary PPM (P6) plus its tokens as a .fqt file, with the C# binding
// bindings/csharp/Fqgan.cs.
//
//   mono Generate.exe FAR.safetensors TOKENIZER.safetensors CLASS SEED OUT.ppm OUT.fqt [DEVICE]
//
// Build and run: see examples/csharp/README.md.
using System;
using System.IO;
using System.Text;

static class Generate
{
    static int Main(string[] args)
    {
        if (args.Length < 6)
        {
            Console.Error.WriteLine("usage: Generate FAR.safetensors TOKENIZER.safetensors CLASS SEED OUT.ppm OUT.fqt [DEVICE]");
            return 2;
        }
        try
        {
            Fqgan.Library.CheckAbi();
            string device = args.Length > 6 ? args[6] : "cpu";
            using (var gen = Fqgan.Generator.LoadFile(args[0], device))
            using (var tok = Fqgan.Tokenizer.LoadFile(args[1], device))
            {
                var p = new Fqgan.GenerateParams { ClassId = int.Parse(args[2]), Seed = ulong.Parse(args[3]) };
                // The tokens, then the image they decode to: what gen.GenerateImages(tok, p) does.
                uint[] tokens = gen.Generate(p, (done, total) =>
                {
                    Console.Error.Write($"\rtoken {done}/{total}" + (done == total ? "\n" : ""));
                    return true; // false would cancel (FqganException with Status.Cancelled)
                });
                WritePpm(args[4], tok.Decode(tokens), tok.Info.ImageWidth, tok.Info.ImageHeight);
                byte[] fqt = Fqgan.Fqt.Write(tok, tokens);
                File.WriteAllBytes(args[5], fqt);
                Console.WriteLine($"class {p.ClassId}, seed {p.Seed}: {tokens.Length} tokens -> {args[4]}, {fqt.Length} bytes -> {args[5]}");
            }
            return 0;
        }
        catch (Fqgan.FqganException e)
        {
            Console.Error.WriteLine($"fqgan error {e.Status}: {e.Message}");
        }
        catch (IOException e)
        {
            Console.Error.WriteLine(e.Message);
        }
        return 1;
    }

    // Writes RGBA8 pixels as a P6 PPM (alpha dropped).
    static void WritePpm(string path, byte[] rgba, int width, int height)
    {
        using (var file = File.Create(path))
        {
            byte[] header = Encoding.ASCII.GetBytes($"P6\n{width} {height}\n255\n");
            file.Write(header, 0, header.Length);
            for (int i = 0; i < rgba.Length; i += 4) file.Write(rgba, i, 3);
        }
    }
}
