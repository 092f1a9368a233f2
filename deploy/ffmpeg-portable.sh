#!/usr/bin/env bash
# ffmpeg-portable.sh: builds a small, self-contained ffmpeg and ffprobe for a
# machine that has an NVIDIA GPU but no ffmpeg (and no network to install
# one), plus a static streamgrid binary, so that deploy/gpu-check.sh can run
# there with only the .gpu/ folder copied over.
#
# The build uses Debian's own ffmpeg source package (the same patched 5.1 as
# the distribution's ffmpeg) configured with --disable-everything, then only
# the components streamgrid's transcoder (internal/transcode/args.go), its
# encoder detection (encoder.go), its tests and gpu-check.sh use. libx264 and
# every ffmpeg library are linked in statically; only glibc stays dynamic,
# because CUDA, NVENC and NVDEC are reached through dlopen of the driver's
# libcuda / libnvidia-encode / libnvcuvid, which a fully static binary cannot
# do. The result runs on any x86-64 Linux with glibc >= Debian 12's (2.36).
#
# Needs Debian 12 (bookworm), root, and Debian's package mirror:
#   apt-get install nasm libx264-dev libffmpeg-nvenc-dev clang llvm dpkg-dev pkg-config
# (the script installs them when apt-get is there and they are missing) and a
# deb-src line for bookworm and bookworm-security (added when missing).
#
# Usage: deploy/ffmpeg-portable.sh [OUTDIR]   (default .gpu, next to the repository root)
# Env:   BUILD_DIR  where the source is unpacked and built (default ~/.cache/streamgrid-ffmpeg)
#        JOBS       make -j (default 2); the build runs under nice -n 10.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.gpu}
build=${BUILD_DIR:-$HOME/.cache/streamgrid-ffmpeg}
jobs=${JOBS:-2}
mkdir -p "$out" "$build"
out=$(cd "$out" && pwd)

log() { printf '== %s\n' "$*" >&2; }

# --- build dependencies -----------------------------------------------------
need=()
command -v nasm >/dev/null || need+=(nasm)
command -v clang >/dev/null || need+=(clang)
command -v llvm-ar >/dev/null || need+=(llvm)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
pkg-config --exists x264 || need+=(libx264-dev)
pkg-config --exists ffnvcodec || need+=(libffmpeg-nvenc-dev)
if ((${#need[@]})); then
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# --- source -------------------------------------------------------------------
src=$(find "$build" -maxdepth 1 -type d -name 'ffmpeg-[0-9]*' | sort | tail -n1)
if [[ -z $src ]]; then
	if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		log "adding deb-src for bookworm"
		cat >/etc/apt/sources.list.d/streamgrid-deb-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
		apt-get update -q
	fi
	log "fetching Debian's ffmpeg source into $build"
	(cd "$build" && apt-get source -q ffmpeg)
	src=$(find "$build" -maxdepth 1 -type d -name 'ffmpeg-[0-9]*' | sort | tail -n1)
fi
log "source: $src"

# --- configure --------------------------------------------------------------
# Every name below is one that some command line of streamgrid, its tests or
# gpu-check.sh needs: the transcoder (internal/transcode/args.go), the encoder
# probe (encoder.go), the snapshots (internal/node/snapshot.go: image2 +
# mjpeg), RTSP publishing and HLS reading in gpu-check.sh. libx265 and
# libopus are left out (size): H.265 renditions on the CPU and the tests
# that make Opus or H.265 sources need a full ffmpeg.
join() { local IFS=,; echo "$*"; }
protocols=(file pipe tcp udp rtp http hls)
demuxers=(mov mpegts h264 hevc aac rtsp sdp rtp hls)
muxers=(mp4 mov mpegts rtsp rtp hls null segment rawvideo h264 hevc adts image2)
decoders=(h264 hevc aac h264_cuvid hevc_cuvid rawvideo wrapped_avframe 'pcm_*')
encoders=(libx264 aac h264_nvenc hevc_nvenc rawvideo wrapped_avframe pcm_s16le mjpeg)
hwaccels=(h264_nvdec hevc_nvdec)
parsers=(h264 hevc aac)
bsfs=(h264_mp4toannexb hevc_mp4toannexb aac_adtstoasc extract_extradata dump_extra null)
# scale/format/aformat/aresample/null/anull/trim/atrim are inserted by the
# ffmpeg tool itself; fps/split/setsar/scale_cuda by the transcoder's graph;
# hwupload_cuda/hwdownload by gpu-check.sh; color/testsrc2/sine/anullsrc are
# the lavfi sources of the detection probes, the tests and gpu-check.sh.
filters=(scale scale_cuda hwupload hwupload_cuda hwdownload format aformat fps split asplit setsar setpts
	null anull aresample trim atrim copy transpose hflip vflip testsrc2 color sine anullsrc)

# libx264 is linked in from its static archive: Debian's x264.pc says -lx264,
# which the linker resolves to the shared library.
pc=$build/pkgconfig
mkdir -p "$pc"
sed 's|^Libs:.*|Libs: -L${libdir} -l:libx264.a|' "$(pkg-config --variable=pcfiledir x264)/x264.pc" >"$pc/x264.pc"
export PKG_CONFIG_PATH=$pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

cd "$src"
if [[ ! -f ffbuild/config.mak ]] || [[ ${RECONFIGURE:-} == 1 ]] || ! grep -q 'l:libx264\.a' ffbuild/config.mak; then
	log "configuring"
	nice -n 10 ./configure \
		--prefix="$build/prefix" \
		--disable-everything --disable-autodetect \
		--disable-doc --disable-ffplay --disable-debug \
		--enable-gpl --enable-static --disable-shared \
		--pkg-config-flags=--static \
		--enable-pthreads \
		--enable-libx264 \
		--enable-ffnvcodec --enable-nvenc --enable-nvdec --enable-cuvid --enable-cuda-llvm \
		--enable-protocol="$(join "${protocols[@]}")" \
		--enable-demuxer="$(join "${demuxers[@]}")" \
		--enable-muxer="$(join "${muxers[@]}")" \
		--enable-decoder="$(join "${decoders[@]}")" \
		--enable-encoder="$(join "${encoders[@]}")" \
		--enable-hwaccel="$(join "${hwaccels[@]}")" \
		--enable-parser="$(join "${parsers[@]}")" \
		--enable-bsf="$(join "${bsfs[@]}")" \
		--enable-filter="$(join "${filters[@]}")" \
		--enable-indev=lavfi \
		--extra-version=streamgrid-portable
fi

log "building with make -j$jobs"
# The programs are relinked every time: make does not relink them when only
# the libraries to link (config.mak) changed.
rm -f ffmpeg ffmpeg_g ffprobe ffprobe_g
nice -n 10 make -j"$jobs" ffmpeg ffprobe
install -m 0755 ffmpeg ffprobe "$out/"
strip "$out/ffmpeg" "$out/ffprobe"

# --- streamgrid ---------------------------------------------------------------
if command -v go >/dev/null; then
	log "building streamgrid"
	(cd "$root" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags="-s -w" -o "$out/streamgrid" ./cmd/streamgrid)
fi

log "done:"
ls -l "$out" >&2
for b in ffmpeg ffprobe; do
	libs=$(ldd "$out/$b" | awk '{print $1}' | tr '\n' ' ')
	log "$b links: $libs"
	if grep -q x264 <<<"$libs"; then
		log "error: $b links libx264 dynamically"
		exit 1
	fi
done
