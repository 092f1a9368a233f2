package transcode

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamgrid/streamgrid/internal/media"
)

var testAAC = &mpeg4audio.AudioSpecificConfig{
	Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 44100, ChannelConfig: 2, ChannelCount: 2,
}

var src720 = SourceInfo{
	Codec: media.CodecH264, Width: 1280, Height: 720, FPS: 25, GOPFrames: 50,
	AudioCodec: media.CodecAAC, AudioConfig: testAAC,
}

func TestBuildArgsX264Single(t *testing.T) {
	l := Ladder{Renditions: []Rendition{{Name: "360p", Height: 360, Bitrate: 800_000}}}
	got := BuildArgs(l, EncoderX264, src720)
	want := []string{
		"-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
		"-progress", "pipe:4", "-stats_period", "1",
		"-analyzeduration", "200000", "-fpsprobesize", "0", "-flags", "low_delay",
		"-f", "mpegts", "-i", "pipe:0",
		"-copyts",
		"-filter_complex", "[0:v:0]scale=640:360,setsar=1,format=yuv420p[v0]",
		"-map", "[v0]",
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "main", "-sc_threshold", "0",
		"-b:v", "800000", "-maxrate", "960000", "-bufsize", "960000",
		"-bf", "0", "-forced-idr", "1",
		"-force_key_frames", "expr:gte(t,n_forced*2-0.001)",
		"-enc_time_base", "1:90000",
		"-g", "100",
		"-map", "0:a:0", "-c:a", "copy",
		"-max_muxing_queue_size", "1024",
		"-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1", "-omit_video_pes_length", "0",
		"-f", "mpegts", "pipe:3",
	}
	if !slices.Equal(got, want) {
		t.Errorf("args:\n got %q\nwant %q", got, want)
	}
}

// argAfter returns the values following each occurrence of flag.
func argsAfter(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

func TestBuildArgsLadders(t *testing.T) {
	three := Ladder{Renditions: []Rendition{
		{Name: "720p", Width: 1280, Height: 720, Bitrate: 2_500_000},
		{Name: "480p", Height: 480, Bitrate: 1_200_000, MaxRate: 1_500_000, FPS: 15},
		{Name: "360p", Width: 640, Bitrate: 700_000, Codec: CodecH265},
	}}
	tests := []struct {
		name   string
		ladder Ladder
		enc    Encoder
		src    SourceInfo
		// expectations
		graph      string
		codecs     []string
		pipes      []string
		progress   string
		hwaccel    bool
		audio      []string // values of -c:a
		extra      []string // flags that must appear
		absent     []string // flags that must not appear
		forceKeys  string
		maxrates   []string
		gopBackups []string
	}{
		{
			name: "x264 three renditions", ladder: three, enc: EncoderX264, src: src720,
			graph: "[0:v:0]split=3[s0][s1][s2];" +
				"[s0]scale=1280:720,setsar=1,format=yuv420p[v0];" +
				"[s1]fps=15,scale=854:480,setsar=1,format=yuv420p[v1];" +
				"[s2]scale=640:360,setsar=1,format=yuv420p[v2]",
			codecs:     []string{"libx264", "libx264", "libx265"},
			pipes:      []string{"pipe:3", "pipe:4", "pipe:5"},
			progress:   "pipe:6",
			audio:      []string{"copy", "copy", "copy"},
			extra:      []string{"-x265-params", "-sc_threshold"},
			absent:     []string{"-hwaccel", "-zerolatency"},
			forceKeys:  "expr:gte(t,n_forced*2-0.001)",
			maxrates:   []string{"3000000", "1500000", "840000"},
			gopBackups: []string{"100", "60", "100"},
		},
		{
			name: "nvenc three renditions", ladder: three, enc: EncoderNVENC, src: src720,
			graph: "[0:v:0]split=3[s0][s1][s2];" +
				"[s0]scale_cuda=1280:720,setsar=1[v0];" +
				"[s1]fps=15,scale_cuda=854:480,setsar=1[v1];" +
				"[s2]scale_cuda=640:360,setsar=1[v2]",
			codecs:     []string{"h264_nvenc", "h264_nvenc", "hevc_nvenc"},
			pipes:      []string{"pipe:3", "pipe:4", "pipe:5"},
			progress:   "pipe:6",
			hwaccel:    true,
			audio:      []string{"copy", "copy", "copy"},
			extra:      []string{"-zerolatency", "-rc", "-tune"},
			absent:     []string{"-x265-params", "-sc_threshold", "format=yuv420p"},
			forceKeys:  "expr:gte(t,n_forced*2-0.001)",
			maxrates:   []string{"3000000", "1500000", "840000"},
			gopBackups: []string{"100", "60", "100"},
		},
		{
			name: "unknown source, aac, explicit gap",
			ladder: Ladder{Audio: AudioAAC, KeyframeInterval: 500 * time.Millisecond, Renditions: []Rendition{
				{Name: "a", Width: 640, Bitrate: 500_000},
				{Name: "b", Height: 180, Bitrate: 200_000, FPS: 10},
			}},
			enc: EncoderX264,
			src: SourceInfo{AudioCodec: media.CodecOpus},
			graph: "[0:v:0]split=2[s0][s1];" +
				"[s0]scale=640:-2,setsar=1,format=yuv420p[v0];" +
				"[s1]fps=10,scale=-2:180,setsar=1,format=yuv420p[v1]",
			codecs:     []string{"libx264", "libx264"},
			pipes:      []string{"pipe:3", "pipe:4"},
			progress:   "pipe:5",
			audio:      []string{"aac", "aac"},
			extra:      []string{"-b:a", "-ar", "-ac"},
			forceKeys:  "expr:gte(t,n_forced*0.5-0.001)",
			maxrates:   []string{"600000", "240000"},
			gopBackups: []string{"10"}, // only the capped one knows its rate
		},
		{
			name:      "no audio",
			ladder:    Ladder{Renditions: []Rendition{{Name: "x", Width: 320, Height: 240, Bitrate: 100_000}}},
			enc:       EncoderX264,
			src:       SourceInfo{Width: 640, Height: 480, FPS: 30, GOPFrames: 300},
			graph:     "[0:v:0]scale=320:240,setsar=1,format=yuv420p[v0]",
			codecs:    []string{"libx264"},
			pipes:     []string{"pipe:3"},
			progress:  "pipe:4",
			absent:    []string{"-c:a", "0:a:0"},
			forceKeys: "expr:gte(t,n_forced*2-0.001)", // a 10 s source GOP in five parts
			maxrates:  []string{"120000"},
			// 2 s at 30 fps, doubled
			gopBackups: []string{"120"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := BuildArgs(tc.ladder, tc.enc, tc.src)
			joined := strings.Join(args, " ")
			if g := argsAfter(args, "-filter_complex"); len(g) != 1 || g[0] != tc.graph {
				t.Errorf("filter graph\n got %q\nwant %q", g, tc.graph)
			}
			if c := argsAfter(args, "-c:v"); !slices.Equal(c, tc.codecs) {
				t.Errorf("codecs %q, want %q", c, tc.codecs)
			}
			if p := argsAfter(args, "-f"); !slices.Equal(p, append([]string{"mpegts"}, repeat("mpegts", len(tc.pipes))...)) {
				t.Errorf("formats %q", p)
			}
			var outputs []string
			for _, a := range args {
				if strings.HasPrefix(a, "pipe:") && a != "pipe:0" && a != tc.progress {
					outputs = append(outputs, a)
				}
			}
			if !slices.Equal(outputs, tc.pipes) {
				t.Errorf("outputs %q, want %q", outputs, tc.pipes)
			}
			if p := argsAfter(args, "-progress"); len(p) != 1 || p[0] != tc.progress {
				t.Errorf("progress %q, want %q", p, tc.progress)
			}
			if hw := slices.Contains(args, "-hwaccel"); hw != tc.hwaccel {
				t.Errorf("hwaccel %v, want %v", hw, tc.hwaccel)
			}
			if tc.hwaccel {
				if i := slices.Index(args, "-hwaccel"); i > slices.Index(args, "-i") ||
					argsAfter(args, "-hwaccel")[0] != "cuda" || argsAfter(args, "-hwaccel_output_format")[0] != "cuda" {
					t.Errorf("hwaccel options misplaced: %q", joined)
				}
			}
			if a := argsAfter(args, "-c:a"); !slices.Equal(a, tc.audio) {
				t.Errorf("audio codecs %q, want %q", a, tc.audio)
			}
			for _, e := range tc.extra {
				if !strings.Contains(joined, e) {
					t.Errorf("missing %q", e)
				}
			}
			for _, e := range tc.absent {
				if strings.Contains(joined, e) {
					t.Errorf("unexpected %q", e)
				}
			}
			n := len(tc.codecs)
			if k := argsAfter(args, "-force_key_frames"); !slices.Equal(k, repeat(tc.forceKeys, n)) {
				t.Errorf("force_key_frames %q, want %q", k, tc.forceKeys)
			}
			if m := argsAfter(args, "-maxrate"); !slices.Equal(m, tc.maxrates) {
				t.Errorf("maxrate %q, want %q", m, tc.maxrates)
			}
			if b := argsAfter(args, "-bufsize"); !slices.Equal(b, tc.maxrates) {
				t.Errorf("bufsize %q, want the maxrates %q", b, tc.maxrates)
			}
			if g := argsAfter(args, "-g"); !slices.Equal(g, tc.gopBackups) {
				t.Errorf("-g %q, want %q", g, tc.gopBackups)
			}
			for _, flag := range []string{"-bf", "-forced-idr", "-enc_time_base", "-muxdelay", "-flush_packets"} {
				if got := len(argsAfter(args, flag)); got != n {
					t.Errorf("%s appears %d times, want once per rendition (%d)", flag, got, n)
				}
			}
			if i, j := slices.Index(args, "-copyts"), slices.Index(args, "-i"); i < j {
				t.Errorf("-copyts before the input")
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestKeyframeGap(t *testing.T) {
	tests := []struct {
		ladder time.Duration
		fps    int
		gop    int
		want   time.Duration
	}{
		{0, 25, 25, time.Second},
		{0, 30, 60, 2 * time.Second},
		{0, 25, 100, 2 * time.Second},              // 4 s source GOP → 2 s
		{0, 25, 75, 1500 * time.Millisecond},       // 3 s → 1.5 s
		{0, 30, 300, 2 * time.Second},              // 10 s → 2 s
		{0, 25, 125, 1666666666 * time.Nanosecond}, // 5 s → 5/3 s
		{0, 25, 5, time.Second},                    // 0.2 s: too short, 1 s
		{0, 0, 0, time.Second},                     // unknown
		{750 * time.Millisecond, 25, 25, 750 * time.Millisecond},
	}
	for _, tc := range tests {
		l := Ladder{KeyframeInterval: tc.ladder}
		if got := l.KeyframeGap(SourceInfo{FPS: tc.fps, GOPFrames: tc.gop}); got != tc.want {
			t.Errorf("gap(%v, %d fps, GOP %d) = %v, want %v", tc.ladder, tc.fps, tc.gop, got, tc.want)
		}
	}
}

func TestOutputs(t *testing.T) {
	l := Ladder{Renditions: []Rendition{
		{Name: "a", Width: 426, Bitrate: 1e5},
		{Name: "b", Height: 240, Bitrate: 1e5, FPS: 30},
		{Name: "c", Bitrate: 1e5, FPS: 12, Codec: CodecH265},
		{Name: "d", Width: 100, Height: 50, Bitrate: 1e5},
	}}
	got := l.Outputs(SourceInfo{Width: 640, Height: 360, FPS: 25})
	want := []struct {
		w, h, fps int
		codec     media.Codec
		capped    bool
	}{
		{426, 240, 25, media.CodecH264, false},
		{426, 240, 25, media.CodecH264, false}, // a cap above the source rate does nothing
		{640, 360, 12, media.CodecH265, true},
		{100, 50, 25, media.CodecH264, false},
	}
	for i, w := range want {
		o := got[i]
		if o.Width != w.w || o.Height != w.h || o.FPS != w.fps || o.Codec != w.codec || o.capped != w.capped {
			t.Errorf("output %d: %+v, want %+v", i, o, w)
		}
	}
	unknown := l.Outputs(SourceInfo{})
	if unknown[0].Width != 426 || unknown[0].Height != 0 || unknown[1].FPS != 30 || !unknown[1].capped {
		t.Errorf("unknown source: %+v", unknown)
	}
}

func TestAudioOutput(t *testing.T) {
	mono8k := &mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 8000, ChannelConfig: 1, ChannelCount: 1}
	tests := []struct {
		name      string
		audio     string
		src       SourceInfo
		codec     media.Codec
		rate, chn int
	}{
		{"none", AudioAAC, SourceInfo{}, media.CodecInvalid, 0, 0},
		{"copy aac", "", SourceInfo{AudioCodec: media.CodecAAC, AudioConfig: testAAC}, media.CodecAAC, 44100, 2},
		{"copy opus", AudioCopy, SourceInfo{AudioCodec: media.CodecOpus}, media.CodecOpus, 0, 0},
		{"opus to aac", AudioAAC, SourceInfo{AudioCodec: media.CodecOpus}, media.CodecAAC, 48000, 2},
		{"mono opus to aac", AudioAAC, SourceInfo{AudioCodec: media.CodecOpus, AudioChannels: 1}, media.CodecAAC, 48000, 1},
		{"aac 8k mono re-encoded", AudioAAC, SourceInfo{AudioCodec: media.CodecAAC, AudioConfig: mono8k}, media.CodecAAC, 8000, 1},
	}
	for _, tc := range tests {
		codec, conf := Ladder{Audio: tc.audio}.AudioOutput(tc.src)
		if codec != tc.codec {
			t.Errorf("%s: codec %v, want %v", tc.name, codec, tc.codec)
			continue
		}
		if tc.rate == 0 {
			if codec == media.CodecOpus && conf != nil {
				t.Errorf("%s: config for Opus", tc.name)
			}
			continue
		}
		if conf == nil || conf.SampleRate != tc.rate || int(conf.ChannelConfig) != tc.chn || conf.Type != mpeg4audio.ObjectTypeAACLC {
			t.Errorf("%s: config %+v, want %d Hz, %d channels", tc.name, conf, tc.rate, tc.chn)
		}
	}
	args := audioArgs(Ladder{Audio: AudioAAC, AudioBitrate: 96000}, SourceInfo{AudioCodec: media.CodecAAC, AudioConfig: mono8k})
	if want := []string{"-map", "0:a:0", "-c:a", "aac", "-b:a", "96000", "-ar", "8000", "-ac", "1"}; !slices.Equal(args, want) {
		t.Errorf("aac args %q, want %q", args, want)
	}
}
