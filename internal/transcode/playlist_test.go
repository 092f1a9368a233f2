package transcode

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamgrid/streamgrid/internal/media"
)

func TestMasterPlaylist(t *testing.T) {
	variants := []Variant{
		{URI: "720p/video1_stream.m3u8", Bandwidth: 3_100_000, AverageBandwidth: 2_600_000, Width: 1280, Height: 720,
			FrameRate: 25, Codecs: []string{"avc1.4d401f", "mp4a.40.2"}, AudioGroup: "audio"},
		{URI: "360p/video1_stream.m3u8", Bandwidth: 900_000, Width: 640, Height: 360,
			FrameRate: 12.5, Codecs: []string{"avc1.4d401e", "mp4a.40.2"}, AudioGroup: "audio"},
	}
	audio := []AudioMedia{{GroupID: "audio", Name: "main", URI: "720p/audio2_stream.m3u8", Default: true, Channels: 2}}
	buf, err := MasterPlaylist(variants, audio)
	if err != nil {
		t.Fatal(err)
	}
	text := string(buf)
	for _, want := range []string{
		"#EXTM3U\n",
		"#EXT-X-INDEPENDENT-SEGMENTS\n",
		`#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="main",AUTOSELECT=YES,DEFAULT=YES,CHANNELS="2",URI="720p/audio2_stream.m3u8"`,
		`#EXT-X-STREAM-INF:BANDWIDTH=3100000,AVERAGE-BANDWIDTH=2600000,CODECS="avc1.4d401f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=25.000,AUDIO="audio"` + "\n720p/video1_stream.m3u8\n",
		`#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.4d401e,mp4a.40.2",RESOLUTION=640x360,FRAME-RATE=12.500,AUDIO="audio"` + "\n360p/video1_stream.m3u8\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("playlist lacks %q:\n%s", want, text)
		}
	}
	if strings.Index(text, "720p/video1") > strings.Index(text, "360p/video1") {
		t.Error("variants out of order")
	}

	// It parses back.
	pl, err := playlist.Unmarshal(buf)
	if err != nil {
		t.Fatalf("unmarshal: %v\n%s", err, text)
	}
	mv, ok := pl.(*playlist.Multivariant)
	if !ok || len(mv.Variants) != 2 || len(mv.Renditions) != 1 || mv.Variants[1].Resolution != "640x360" ||
		*mv.Variants[0].AverageBandwidth != 2_600_000 {
		t.Errorf("parsed back: %+v", pl)
	}

	// Muxed audio, no optional attributes.
	buf, err = MasterPlaylist([]Variant{{URI: "a.m3u8", Bandwidth: 1, Codecs: []string{"avc1.42c01e"}}}, nil)
	if err != nil || strings.Contains(string(buf), "RESOLUTION") || strings.Contains(string(buf), "EXT-X-MEDIA") {
		t.Errorf("minimal playlist: %v\n%s", err, buf)
	}

	for _, bad := range [][]Variant{
		nil,
		{{Bandwidth: 1, Codecs: []string{"x"}}},
		{{URI: "a", Codecs: []string{"x"}}},
		{{URI: "a", Bandwidth: 1}},
		{{URI: "a", Bandwidth: 1, Codecs: []string{"x"}, AudioGroup: "nope"}},
	} {
		if _, err := MasterPlaylist(bad, audio); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	if _, err := MasterPlaylist(variants, []AudioMedia{{GroupID: "audio"}}); err == nil {
		t.Error("accepted an audio rendition without name and URI")
	}
}

func TestCodecString(t *testing.T) {
	clip := sampleClip(t)
	want := "avc1." + hex.EncodeToString(clip.SPS[1:4])
	if got := CodecString(clip.SPS); got != want || !strings.HasPrefix(got, "avc1.4d") {
		t.Errorf("CodecString(sample SPS) = %q, want %q (Main profile)", got, want)
	}
	for _, bad := range [][]byte{nil, {0x67}, {0x01, 0x02, 0x03, 0x04}} {
		if got := CodecString(bad); got != "" {
			t.Errorf("CodecString(%x) = %q", bad, got)
		}
	}
	if got := AudioCodecString(media.CodecAAC, clip.AudioConfig); got != "mp4a.40.2" {
		t.Errorf("AudioCodecString(AAC-LC) = %q", got)
	}
	if got := AudioCodecString(media.CodecOpus, nil); got != "opus" {
		t.Errorf("AudioCodecString(Opus) = %q", got)
	}
	if got := AudioCodecString(media.CodecH264, nil); got != "" {
		t.Errorf("AudioCodecString(H264) = %q", got)
	}
}
