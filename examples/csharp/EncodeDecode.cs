// Encodes a binary PPM (P6) image into FQGAN token grids and decodes it back, with the C#
// binding bindings/csharp/Fqgan.cs.
//
//   mono EncodeDecode.exe MODEL.safetensors IN.ppm OUT.ppm [DEVICE]
//
// Build and run: see examples/csharp/README.md.
using System;
using System.IO;
using System.Text;

static class EncodeDecode
{
    static int Main(string[] args)
    {
        if (args.Length < 3)
        {
            Console.Error.WriteLine("usage: EncodeDecode MODEL.safetensors IN.ppm OUT.ppm [cpu|ndarray|cuda:N]");
            return 2;
        }
        try
        {
            Fqgan.Library.CheckAbi();
            using (var tok = Fqgan.Tokenizer.LoadFile(args[0], args.Length > 3 ? args[3] : "cpu"))
            {
                Console.WriteLine($"fqgan {Fqgan.Library.Version} on {tok.Info.Device}: {tok.Info.CodebookCount} sub-codebooks, "
                    + $"{tok.Info.ImageWidth}x{tok.Info.ImageHeight} images");
                byte[] rgb = ReadPpm(args[1], out int width, out int height);
                uint[] tokens = tok.Encode(rgb, width, height, Fqgan.PixelFormat.Rgb8);
                byte[] rgba = tok.Decode(tokens);
                WritePpm(args[2], rgba, tok.Info.ImageWidth, tok.Info.ImageHeight);
                Console.WriteLine($"{tokens.Length} tokens -> {args[2]}");
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

    // Reads a P6 PPM with maxval 255 (header fields separated by single whitespace, no comments).
    static byte[] ReadPpm(string path, out int width, out int height)
    {
        byte[] file = File.ReadAllBytes(path);
        int at = 0;
        if (Field(file, ref at) != "P6") throw new IOException($"{path}: not a binary PPM (P6)");
        width = int.Parse(Field(file, ref at));
        height = int.Parse(Field(file, ref at));
        if (Field(file, ref at) != "255") throw new IOException($"{path}: maxval must be 255");
        var rgb = new byte[width * height * 3];
        if (file.Length - at < rgb.Length) throw new IOException($"{path}: truncated");
        Array.Copy(file, at, rgb, 0, rgb.Length);
        return rgb;
    }

    // The header field starting at `at`; moves `at` past it and the single whitespace after it.
    static string Field(byte[] file, ref int at)
    {
        var field = new StringBuilder();
        while (at < file.Length && !char.IsWhiteSpace((char)file[at])) field.Append((char)file[at++]);
        at++;
        return field.ToString();
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
