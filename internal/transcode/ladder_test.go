package transcode

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLadderValidate(t *testing.T) {
	ok := Rendition{Name: "720p", Width: 1280, Height: 720, Bitrate: 2_500_000}
	with := func(mod func(r *Rendition)) Ladder {
		r := ok
		mod(&r)
		return Ladder{Renditions: []Rendition{r}}
	}
	tests := []struct {
		name   string
		ladder Ladder
		field  string // "" = valid
	}{
		{"valid", Ladder{Renditions: []Rendition{ok}}, ""},
		{"valid full", Ladder{Renditions: []Rendition{ok, {Name: "360p_low-1", Height: 360, Bitrate: 500_000,
			MaxRate: 800_000, FPS: 15, Codec: CodecH265}}, Passthrough: true, Audio: AudioAAC, AudioBitrate: 96_000,
			KeyframeInterval: 2 * time.Second}, ""},
		{"passthrough only", Ladder{Passthrough: true}, ""},
		{"empty", Ladder{}, "renditions"},
		{"too many", Ladder{Renditions: make([]Rendition, MaxRenditions+1)}, "renditions"},
		{"no name", with(func(r *Rendition) { r.Name = "" }), "renditions[0].name"},
		{"bad name", with(func(r *Rendition) { r.Name = "720P" }), "renditions[0].name"},
		{"slash name", with(func(r *Rendition) { r.Name = "a/b" }), "renditions[0].name"},
		{"long name", with(func(r *Rendition) { r.Name = strings.Repeat("a", 33) }), "renditions[0].name"},
		{"duplicate", Ladder{Renditions: []Rendition{ok, ok}}, "renditions[1].name"},
		{"odd width", with(func(r *Rendition) { r.Width = 1279 }), "renditions[0].width"},
		{"negative height", with(func(r *Rendition) { r.Height = -2 }), "renditions[0].height"},
		{"tiny", with(func(r *Rendition) { r.Width = 8 }), "renditions[0].width"},
		{"huge", with(func(r *Rendition) { r.Height = 8640 }), "renditions[0].height"},
		{"no bitrate", with(func(r *Rendition) { r.Bitrate = 0 }), "renditions[0].bitrate"},
		{"maxrate below", with(func(r *Rendition) { r.MaxRate = 1_000_000 }), "renditions[0].max_rate"},
		{"fps", with(func(r *Rendition) { r.FPS = -1 }), "renditions[0].fps"},
		{"fps high", with(func(r *Rendition) { r.FPS = 1000 }), "renditions[0].fps"},
		{"codec", with(func(r *Rendition) { r.Codec = "vp9" }), "renditions[0].codec"},
		{"audio", Ladder{Renditions: []Rendition{ok}, Audio: "opus"}, "audio"},
		{"audio bitrate", Ladder{Renditions: []Rendition{ok}, AudioBitrate: 1000}, "audio_bitrate"},
		{"gap", Ladder{Renditions: []Rendition{ok}, KeyframeInterval: time.Minute}, "keyframe_interval"},
	}
	for _, tc := range tests {
		err := tc.ladder.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: error %v, want one naming %q", tc.name, err, tc.field)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.field+": ") {
			t.Errorf("%s: message %q does not start with the field", tc.name, err)
		}
	}
}

func TestEncoderPolicyValidate(t *testing.T) {
	for _, e := range []Encoder{"", EncoderAuto, EncoderNVENC, EncoderX264} {
		if err := e.Validate(); err != nil {
			t.Errorf("encoder %q: %v", e, err)
		}
	}
	for _, e := range []Encoder{"vaapi", "qsv", "NVENC", "libx264"} {
		if err := e.Validate(); err == nil {
			t.Errorf("encoder %q accepted", e)
		}
	}
	for _, p := range []Policy{"", PolicyCPU, PolicyRefuse} {
		if err := p.Validate(); err != nil {
			t.Errorf("policy %q: %v", p, err)
		}
	}
	if err := Policy("gpu").Validate(); err == nil {
		t.Error("policy gpu accepted")
	}
}
