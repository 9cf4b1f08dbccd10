//! Training images from folder trees and zip archives (`.zip`, `.pk3`), with the class taken
//! from the sub-folder, the official random-crop / flip augmentation, a seeded order and
//! decoding on worker threads ahead of the model.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use image::RgbImage;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tga", "webp", "gif", "tif", "tiff"];
const ARCHIVE_EXTENSIONS: &[&str] = &["zip", "pk3"];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Location {
    File(PathBuf),
    /// An entry of a zip archive.
    Archive {
        archive: PathBuf,
        entry: String,
    },
}

/// One image of a dataset.
#[derive(Clone, Debug)]
pub struct Item {
    location: Location,
    /// Index into [`ImageDataset::classes`].
    pub class: usize,
    /// Stable name that does not depend on where the data lives: the path relative to the
    /// folder given to [`ImageDataset::scan`] (`/`-separated), the archive entry, or the file
    /// name of a single image. Keys precomputed teacher features.
    pub id: String,
}

impl Item {
    /// A readable name: the file path, or `archive.pk3:entry`.
    pub fn name(&self) -> String {
        match &self.location {
            Location::File(path) => path.display().to_string(),
            Location::Archive { archive, entry } => format!("{}:{entry}", archive.display()),
        }
    }
}

/// A list of images and their classes, in a stable (sorted) order.
#[derive(Clone, Debug, Default)]
pub struct ImageDataset {
    pub items: Vec<Item>,
    /// Class names: the folder directly containing each image, relative to the root given.
    pub classes: Vec<String>,
}

impl ImageDataset {
    /// Collects the images under each path: a folder (searched recursively), an archive, or
    /// a single image file. Files with other extensions are ignored.
    pub fn scan(paths: &[PathBuf]) -> Result<Self> {
        let mut found: Vec<(Location, String, String)> = Vec::new();
        for root in paths {
            let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
            if meta.is_dir() {
                scan_folder(root, root, &mut found)?;
            } else if has_extension(root, ARCHIVE_EXTENSIONS) {
                scan_archive(root, &mut found)?;
            } else {
                let id = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                found.push((Location::File(root.clone()), String::new(), id));
            }
        }
        if found.is_empty() {
            let list: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
            return Err(Error::Input(format!("no images found in {}", list.join(", "))));
        }
        let classes: Vec<String> =
            found.iter().map(|(_, c, _)| c.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        found.sort_by(|a, b| location_key(&a.0).cmp(&location_key(&b.0)));
        let items = found
            .into_iter()
            .map(|(location, class, id)| Item {
                location,
                class: classes.binary_search(&class).expect("collected above"),
                id,
            })
            .collect();
        Ok(Self { items, classes })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Decodes image `index` as RGB8; errors name the file (and archive entry).
    pub fn load(&self, index: usize) -> Result<RgbImage> {
        let item = &self.items[index];
        let bytes = match &item.location {
            Location::File(path) => read_image_file(path)?,
            Location::Archive { archive, entry } => read_archive_entry(archive, entry)?,
        };
        let name = PathBuf::from(item.name());
        let decoded = crate::image::decode_bytes(&bytes, &name)?;
        let (long, short) = (decoded.width().max(decoded.height()), decoded.width().min(decoded.height()));
        // Crops scale the short side up to the model's size: a 1 x 1000000 strip would become
        // a 64 x 64000000 image.
        if long > MAX_ASPECT * short {
            return Err(Error::Image {
                path: name,
                message: format!(
                    "image is {}x{}: more elongated than {MAX_ASPECT}:1, which training crops cannot use",
                    decoded.width(),
                    decoded.height()
                ),
            });
        }
        Ok(decoded.to_rgb8())
    }
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}

fn location_key(location: &Location) -> (PathBuf, String) {
    match location {
        Location::File(path) => (path.clone(), String::new()),
        Location::Archive { archive, entry } => (archive.clone(), entry.clone()),
    }
}

fn scan_folder(root: &Path, dir: &Path, found: &mut Vec<(Location, String, String)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            scan_folder(root, &path, found)?;
        } else if has_extension(&path, IMAGE_EXTENSIONS) {
            let class = path.parent().and_then(|p| p.strip_prefix(root).ok()).map(|p| p.to_string_lossy().into_owned());
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let id = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            found.push((Location::File(path), class.unwrap_or_default(), id));
        }
    }
    Ok(())
}

fn open_archive(path: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    zip::ZipArchive::new(file)
        .map_err(|e| Error::Image { path: path.into(), message: format!("not a readable zip archive: {e}") })
}

fn scan_archive(path: &Path, found: &mut Vec<(Location, String, String)>) -> Result<()> {
    let archive = open_archive(path)?;
    for name in archive.file_names() {
        if name.ends_with('/') || !has_extension(Path::new(name), IMAGE_EXTENSIONS) {
            continue;
        }
        let class = Path::new(name).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        found.push((
            Location::Archive { archive: path.to_path_buf(), entry: name.to_string() },
            class,
            name.to_string(),
        ));
    }
    Ok(())
}

/// The largest image file read (from a folder or an archive entry).
pub const MAX_IMAGE_FILE_BYTES: u64 = 128 << 20;
/// The largest ratio of an image's long side to its short side that training accepts.
pub const MAX_ASPECT: u32 = 64;

fn too_large(name: &str, size: u64) -> Error {
    Error::Image {
        path: name.into(),
        message: format!("is {size} bytes; image files are read up to {} MiB", MAX_IMAGE_FILE_BYTES >> 20),
    }
}

fn read_image_file(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size > MAX_IMAGE_FILE_BYTES {
        return Err(too_large(&path.display().to_string(), size));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// An archive entry's bytes, never more than [`MAX_IMAGE_FILE_BYTES`]: the declared size is
/// checked first, and the read stops there too (a zip bomb declares a small size).
fn read_archive_entry(archive: &Path, entry: &str) -> Result<Vec<u8>> {
    let mut zip = open_archive(archive)?;
    let name = format!("{}:{entry}", archive.display());
    let file = zip.by_name(entry).map_err(|e| Error::Image { path: name.clone().into(), message: e.to_string() })?;
    if file.size() > MAX_IMAGE_FILE_BYTES {
        return Err(too_large(&name, file.size()));
    }
    let mut bytes = Vec::with_capacity(file.size() as usize);
    file.take(MAX_IMAGE_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| Error::io(&name, e))?;
    if bytes.len() as u64 > MAX_IMAGE_FILE_BYTES {
        return Err(Error::Image {
            path: name.into(),
            message: format!("inflates past {} MiB (a zip bomb?)", MAX_IMAGE_FILE_BYTES >> 20),
        });
    }
    Ok(bytes)
}

/// The official training augmentation: resize so the short side is a random length in
/// [size, size / min_crop_fraction], take a random size x size crop, flip half the images.
#[derive(Clone, Copy, Debug)]
pub struct Augment {
    pub size: u32,
    pub min_crop_fraction: f32,
    pub hflip: bool,
}

impl Augment {
    /// A centre crop of the short side resized to `size`, no flip: for evaluation.
    pub fn center(size: u32) -> Self {
        Self { size, min_crop_fraction: 1.0, hflip: false }
    }

    pub fn apply(&self, image: &RgbImage, rng: &mut StdRng) -> RgbImage {
        if self.min_crop_fraction >= 1.0 && !self.hflip {
            return center_crop(image, self.size);
        }
        let (w, h) = image.dimensions();
        let short = w.min(h) as f32;
        let max_side = self.size as f32 / self.min_crop_fraction.clamp(0.05, 1.0);
        let side =
            if max_side > self.size as f32 { rng.random_range(self.size as f32..=max_side) } else { self.size as f32 };
        let scale = side / short;
        let (rw, rh) =
            (((w as f32 * scale).round() as u32).max(self.size), ((h as f32 * scale).round() as u32).max(self.size));
        let resized = image::imageops::resize(image, rw, rh, image::imageops::FilterType::Triangle);
        let (x, y) = if self.min_crop_fraction >= 1.0 {
            ((rw - self.size) / 2, (rh - self.size) / 2)
        } else {
            (rng.random_range(0..=rw - self.size), rng.random_range(0..=rh - self.size))
        };
        let mut crop = image::imageops::crop_imm(&resized, x, y, self.size, self.size).to_image();
        if self.hflip && rng.random_bool(0.5) {
            image::imageops::flip_horizontal_in_place(&mut crop);
        }
        crop
    }
}

/// The short side resized to `size`, then the central `size` x `size` square.
pub fn center_crop(image: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let scale = size as f32 / w.min(h) as f32;
    let (rw, rh) = (((w as f32 * scale).round() as u32).max(size), ((h as f32 * scale).round() as u32).max(size));
    let resized = image::imageops::resize(image, rw, rh, image::imageops::FilterType::Triangle);
    image::imageops::crop_imm(&resized, (rw - size) / 2, (rh - size) / 2, size, size).to_image()
}

/// The fixed views of each image that code extraction encodes (official
/// `extract_codes_c2i_*`): one centre crop, the centre crop and its mirror, or torchvision's
/// `TenCrop` of a centre crop `crop_range` times larger than the model's size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Views {
    Center,
    CenterAndFlip,
    TenCrop { crop_range: f32 },
}

impl Views {
    pub fn count(&self) -> usize {
        match self {
            Views::Center => 1,
            Views::CenterAndFlip => 2,
            Views::TenCrop { .. } => 10,
        }
    }

    /// A short description for file metadata and logs.
    pub fn describe(&self) -> String {
        match self {
            Views::Center => "center".into(),
            Views::CenterAndFlip => "center+flip".into(),
            Views::TenCrop { crop_range } => format!("ten-crop x{crop_range}"),
        }
    }

    /// `count()` images of `size` x `size`.
    pub fn apply(&self, image: &RgbImage, size: u32) -> Vec<RgbImage> {
        match *self {
            Views::Center => vec![center_crop(image, size)],
            Views::CenterAndFlip => {
                let crop = center_crop(image, size);
                let flipped = image::imageops::flip_horizontal(&crop);
                vec![crop, flipped]
            }
            Views::TenCrop { crop_range } => {
                let large = center_crop(image, ((size as f32 * crop_range) as u32).max(size));
                let flipped = image::imageops::flip_horizontal(&large);
                [five_crop(&large, size), five_crop(&flipped, size)].concat()
            }
        }
    }
}

/// torchvision `FiveCrop` order: top-left, top-right, bottom-left, bottom-right, centre.
fn five_crop(image: &RgbImage, size: u32) -> Vec<RgbImage> {
    let (w, h) = image.dimensions();
    let corners = [(0, 0), (w - size, 0), (0, h - size), (w - size, h - size), ((w - size) / 2, (h - size) / 2)];
    corners.iter().map(|&(x, y)| image::imageops::crop_imm(image, x, y, size, size).to_image()).collect()
}

/// A batch of augmented images with their dataset indices and classes.
#[derive(Debug)]
pub struct Batch {
    pub indices: Vec<usize>,
    pub images: Vec<RgbImage>,
    pub classes: Vec<usize>,
    /// Images that failed to decode and were skipped (with `skip_bad`), by name.
    pub skipped: Vec<String>,
}

/// What the loader does with an unreadable image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadImages {
    Fail,
    Skip,
}

/// Batches in a seeded shuffled order, decoded by `workers` threads while the caller trains on
/// the previous batches (up to `prefetch` batches ahead). The order and every augmentation
/// depend only on the seed, the epoch and the position, never on thread timing.
pub struct Loader {
    receiver: mpsc::Receiver<Result<Batch>>,
}

pub struct LoaderConfig {
    pub batch_size: usize,
    pub seed: u64,
    /// The first step to produce (for resuming): batches before it are skipped undecoded.
    pub start_step: u64,
    pub workers: usize,
    pub prefetch: usize,
    pub bad_images: BadImages,
}

impl Loader {
    pub fn new(dataset: ImageDataset, augment: Augment, config: LoaderConfig) -> Self {
        let (sender, receiver) = mpsc::sync_channel(config.prefetch.max(1));
        std::thread::spawn(move || {
            for step in config.start_step.. {
                let indices = step_indices(dataset.len(), config.batch_size, config.seed, step);
                let batch = load_batch(
                    &dataset,
                    &augment,
                    &indices,
                    config.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    &config,
                );
                if sender.send(batch).is_err() {
                    return; // the training loop is done
                }
            }
        });
        Self { receiver }
    }

    /// The next batch; the loader never runs out (epochs repeat with new orders).
    pub fn next_batch(&self) -> Result<Batch> {
        self.receiver.recv().map_err(|_| Error::Input("the data loader thread stopped".into()))?
    }
}

/// The dataset indices of training step `step`: consecutive slices of a per-epoch seeded
/// permutation (an epoch is `len / batch_size` steps; a batch larger than the dataset wraps).
pub fn step_indices(len: usize, batch_size: usize, seed: u64, step: u64) -> Vec<usize> {
    let per_epoch = (len / batch_size).max(1) as u64;
    let (epoch, within) = (step / per_epoch, (step % per_epoch) as usize);
    let order = epoch_order(len, seed, epoch);
    let start = within * batch_size;
    (start..start + batch_size).map(|i| order[i % order.len()]).collect()
}

/// A permutation of 0..len fixed by (seed, epoch).
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed.wrapping_add(epoch.wrapping_mul(0x2545_F491_4F6C_DD1D))));
    order
}

fn load_batch(
    dataset: &ImageDataset,
    augment: &Augment,
    indices: &[usize],
    seed: u64,
    config: &LoaderConfig,
) -> Result<Batch> {
    let workers = config.workers.clamp(1, indices.len().max(1));
    let chunk = indices.len().div_ceil(workers);
    let results: Vec<Result<RgbImage>> = std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(j, &index)| {
                            let mut rng = StdRng::seed_from_u64(seed.wrapping_add((c * chunk + j) as u64));
                            dataset.load(index).map(|image| augment.apply(&image, &mut rng))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("decoder thread panicked")).collect()
    });
    let mut batch = Batch { indices: Vec::new(), images: Vec::new(), classes: Vec::new(), skipped: Vec::new() };
    for (&index, result) in indices.iter().zip(results) {
        match result {
            Ok(image) => {
                batch.indices.push(index);
                batch.images.push(image);
                batch.classes.push(dataset.items[index].class);
            }
            Err(err) if config.bad_images == BadImages::Skip => batch.skipped.push(err.to_string()),
            Err(err) => return Err(err),
        }
    }
    if batch.images.is_empty() {
        return Err(Error::Input(format!("every image of a batch failed to load: {}", batch.skipped.join("; "))));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_png(path: &Path, w: u32, h: u32, shade: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_fn(w, h, |x, y| image::Rgb([shade, (x % 256) as u8, (y % 256) as u8])).save(path).unwrap();
    }

    #[test]
    fn hostile_training_files_are_refused_by_name_in_bounded_memory() {
        use std::io::Write;

        let dir = tempfile::tempdir().unwrap();
        let mut png = Vec::new();
        RgbImage::new(8, 8).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let archive = dir.path().join("bad.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        let deflate = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("c/liar.png", deflate).unwrap();
        zip.write_all(&png).unwrap();
        // A zip bomb: a few hundred KB that inflate past the read limit.
        zip.start_file("c/bomb.png", deflate.large_file(false)).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..=(MAX_IMAGE_FILE_BYTES >> 20) {
            zip.write_all(&zeros).unwrap();
        }
        zip.finish().unwrap();
        // The first central-directory entry ("liar") now declares ~4 GB uncompressed.
        let mut bytes = std::fs::read(&archive).unwrap();
        let central = bytes.windows(4).position(|w| w == [0x50, 0x4b, 0x01, 0x02]).unwrap();
        bytes[central + 24..central + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        // The second ("bomb") declares 1000 bytes.
        let second = central + 4 + bytes[central + 4..].windows(4).position(|w| w == [0x50, 0x4b, 0x01, 0x02]).unwrap();
        bytes[second + 24..second + 28].copy_from_slice(&1000u32.to_le_bytes());
        std::fs::write(&archive, &bytes).unwrap();
        // A 4 KB PNG strip whose crops would be gigapixels, and one past the decoder's side limit.
        write_png(&dir.path().join("strips/c/strip.png"), 10_000, 2, 0);
        write_png(&dir.path().join("strips/c/wide.png"), crate::image::MAX_IMAGE_SIDE + 1, 1, 0);
        write_png(&dir.path().join("strips/c/good.png"), 20, 20, 0);

        let data = ImageDataset::scan(&[archive, dir.path().join("strips")]).unwrap();
        let error = |suffix: &str| {
            let index = data.items.iter().position(|i| i.name().ends_with(suffix)).unwrap();
            data.load(index).unwrap_err().to_string()
        };
        let liar = error("c/liar.png");
        assert!(liar.contains("liar.png") && liar.contains("4294967280 bytes"), "{liar}");
        let bomb = error("c/bomb.png");
        assert!(bomb.contains("bomb.png") && bomb.contains("inflates past"), "{bomb}");
        let strip = error("strip.png");
        assert!(strip.contains("strip.png") && strip.contains("10000x2") && strip.contains("64:1"), "{strip}");
        let wide = error("wide.png");
        assert!(wide.contains("wide.png") && wide.contains("limits"), "{wide}");

        // Under --skip-bad every one of them is skipped and counted, never a crash.
        let config = LoaderConfig {
            batch_size: 5,
            seed: 1,
            start_step: 0,
            workers: 2,
            prefetch: 2,
            bad_images: BadImages::Skip,
        };
        let batch = Loader::new(data, Augment::center(16), config).next_batch().unwrap();
        assert_eq!((batch.images.len(), batch.skipped.len()), (1, 4));
    }

    #[test]
    fn folders_and_archives_give_classes_and_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("tree/wood/a.png"), 40, 30, 10);
        write_png(&dir.path().join("tree/metal/b.png"), 30, 40, 20);
        std::fs::write(dir.path().join("tree/metal/notes.txt"), "ignored").unwrap();
        std::fs::write(dir.path().join("tree/metal/broken.png"), "not a png").unwrap();

        let archive = dir.path().join("textures.pk3");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        let mut png = Vec::new();
        RgbImage::new(20, 20).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        zip.start_file("textures/brick/wall.png", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(&png).unwrap();
        zip.finish().unwrap();

        let data = ImageDataset::scan(&[dir.path().join("tree"), archive]).unwrap();
        assert_eq!(data.classes, ["metal", "textures/brick", "wood"]);
        assert_eq!(data.len(), 4);
        let names: Vec<_> = data.items.iter().map(|i| i.name()).collect();
        let ids: BTreeSet<_> = data.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, BTreeSet::from(["metal/b.png", "metal/broken.png", "textures/brick/wall.png", "wood/a.png"]));
        let broken = names.iter().position(|n| n.ends_with("broken.png")).unwrap();
        let err = data.load(broken).unwrap_err().to_string();
        assert!(err.contains("broken.png") && err.contains("cannot decode"), "{err}");
        let in_zip = names.iter().position(|n| n.ends_with("textures.pk3:textures/brick/wall.png")).unwrap();
        assert_eq!(data.load(in_zip).unwrap().dimensions(), (20, 20));

        let config =
            |bad_images| LoaderConfig { batch_size: 4, seed: 1, start_step: 0, workers: 2, prefetch: 2, bad_images };
        let loader = Loader::new(
            data.clone(),
            Augment { size: 16, min_crop_fraction: 0.8, hflip: true },
            config(BadImages::Skip),
        );
        let batch = loader.next_batch().unwrap();
        assert_eq!((batch.images.len(), batch.skipped.len()), (3, 1));
        assert!(batch.images.iter().all(|i| i.dimensions() == (16, 16)));
        let loader = Loader::new(data, Augment::center(16), config(BadImages::Fail));
        assert!(loader.next_batch().unwrap_err().to_string().contains("broken.png"));
    }

    #[test]
    fn ten_crop_takes_corners_centre_and_their_mirrors() {
        // 44 px -> crop_range 1.1 of 40 keeps 44: corners are exact sub-squares.
        let image = RgbImage::from_fn(44, 44, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let views = Views::TenCrop { crop_range: 1.1 }.apply(&image, 40);
        assert_eq!(views.len(), 10);
        assert!(views.iter().all(|v| v.dimensions() == (40, 40)));
        assert_eq!(views[1].get_pixel(0, 0).0, [4, 0, 0], "top-right starts at x = 4");
        assert_eq!(views[4].get_pixel(0, 0).0, [2, 2, 0], "centre");
        assert_eq!(views[5].get_pixel(0, 0).0, [43, 0, 0], "mirrored top-left starts at the right edge");
        let pair = Views::CenterAndFlip.apply(&image, 44);
        assert_eq!((pair[0].get_pixel(0, 0).0[0], pair[1].get_pixel(0, 0).0[0]), (0, 43));
    }

    #[test]
    fn order_and_augmentation_depend_only_on_seed_and_step() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..6 {
            write_png(&dir.path().join(format!("c/{i}.png")), 48, 32, i as u8 * 40);
        }
        let data = ImageDataset::scan(&[dir.path().to_path_buf()]).unwrap();
        let augment = Augment { size: 24, min_crop_fraction: 0.8, hflip: true };
        let run = |workers, start_step| {
            let config =
                LoaderConfig { batch_size: 2, seed: 9, start_step, workers, prefetch: 1, bad_images: BadImages::Fail };
            let loader = Loader::new(data.clone(), augment, config);
            (0..5 - start_step).map(|_| loader.next_batch().unwrap()).map(|b| (b.indices, b.images)).collect::<Vec<_>>()
        };
        let straight = run(1, 0);
        assert_eq!(straight, run(3, 0), "thread count must not change the data");
        assert_eq!(straight[2..], run(2, 2)[..], "resuming at step 2 gives the same batches");
        assert_ne!(epoch_order(6, 9, 0), epoch_order(6, 9, 1));
    }
}
