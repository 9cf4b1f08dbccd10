#!/usr/bin/env bash
# Fetch Debian's ufoai-textures (GPL-2+, ~330 MB .deb) and cut it into a labelled image
# folder tree for training: one sub-folder per texture family (the class), split into
# train/ and val/ (every 10th file of each class, in name order, is held out).
#
#   tools/get-ufoai-textures.sh [DEST]        # default DEST: data/ufoai
#
# Result: DEST/train/<class>/*.{png,jpg} and DEST/val/<class>/*.{png,jpg} for the ten
# largest families: buildings misc mattn nature ctp1 base pics alienb material trak.
# Re-running is cheap: the .deb and the extraction are kept in DEST/.cache.
set -euo pipefail

dest="${1:-data/ufoai}"
classes=(buildings misc mattn nature ctp1 base pics alienb material trak)
cache="$dest/.cache"
mkdir -p "$cache"

deb=$(ls "$cache"/ufoai-textures_*_all.deb 2>/dev/null | head -n1 || true)
if [[ -z "$deb" ]]; then
    echo "downloading ufoai-textures with apt-get download ..."
    (cd "$cache" && apt-get download ufoai-textures)
    deb=$(ls "$cache"/ufoai-textures_*_all.deb | head -n1)
fi

pk3="$cache/root/usr/share/games/ufoai/base/0textures.pk3"
if [[ ! -f "$pk3" ]]; then
    dpkg-deb -x "$deb" "$cache/root"
fi

rm -rf "$dest/train" "$dest/val" "$cache/unzipped"
unzip -q "$pk3" 'textures/*' -d "$cache/unzipped"

for class in "${classes[@]}"; do
    mkdir -p "$dest/train/$class" "$dest/val/$class"
    i=0
    while IFS= read -r -d '' file; do
        split=train
        if (( i % 10 == 9 )); then split=val; fi
        # Flatten sub-folders into the file name so names stay unique within the class.
        rel="${file#"$cache/unzipped/textures/tex_$class/"}"
        mv "$file" "$dest/$split/$class/${rel//\//_}"
        i=$((i + 1))
    done < <(find "$cache/unzipped/textures/tex_$class" -type f \( -name '*.png' -o -name '*.jpg' \) -print0 | sort -z)
done
rm -rf "$cache/unzipped"

for split in train val; do
    echo "$split: $(find "$dest/$split" -type f | wc -l) images in ${#classes[@]} classes ($dest/$split)"
done
