package origin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamgrid/streamgrid/internal/transcode"
)

// masterLocked builds the master playlist of a transcoded stream from the
// newest instance of every rendition set. complete says whether every
// rendition has content; body is nil when none has.
func (s *stream) masterLocked() (body []byte, complete bool, err error) {
	type entry struct {
		rend   int
		prefix string
		group  string
		out    *transcode.Output
	}
	var entries []entry
	l := s.plan.rule.Ladder
	if l.Passthrough {
		entries = append(entries, entry{rend: 0, group: "audio"})
	}
	outs := l.Outputs(s.tcSrc)
	for k, rs := range s.rends {
		entries = append(entries, entry{rend: k + 1, prefix: rs.prefix, group: "audio_" + rs.name, out: &outs[k]})
	}
	complete = true
	var variants []transcode.Variant
	var audio []transcode.AudioMedia
	for _, e := range entries {
		head := s.headOfLocked(e.rend)
		if head == nil {
			complete = false
			continue
		}
		pl, err := playlist.Unmarshal(head.snap.multivariant)
		if err != nil {
			return nil, false, fmt.Errorf("multivariant playlist: %w", err)
		}
		mv, ok := pl.(*playlist.Multivariant)
		if !ok || len(mv.Variants) == 0 {
			return nil, false, errors.New("multivariant playlist: no variant")
		}
		v0 := mv.Variants[0]
		v := transcode.Variant{URI: e.prefix + v0.URI, Bandwidth: v0.Bandwidth, Codecs: v0.Codecs}
		if v0.AverageBandwidth != nil {
			v.AverageBandwidth = *v0.AverageBandwidth
		}
		if v0.FrameRate != nil {
			v.FrameRate = *v0.FrameRate
		}
		if w, h, ok := strings.Cut(v0.Resolution, "x"); ok {
			v.Width, _ = strconv.Atoi(w)
			v.Height, _ = strconv.Atoi(h)
		}
		if e.out != nil {
			if v.Bandwidth <= 0 {
				v.Bandwidth = e.out.Rendition.Bitrate * 6 / 5
			}
			if v.Width == 0 && e.out.Width > 0 {
				v.Width, v.Height = e.out.Width, e.out.Height
			}
			if v.FrameRate == 0 && e.out.FPS > 0 {
				v.FrameRate = float64(e.out.FPS)
			}
		}
		if v.Bandwidth <= 0 {
			v.Bandwidth = 1 // not measured yet; the attribute is required
		}
		for _, r := range mv.Renditions {
			if r.Type != playlist.MultivariantRenditionTypeAudio || r.URI == nil {
				continue
			}
			am := transcode.AudioMedia{GroupID: e.group, Name: r.Name, URI: e.prefix + *r.URI, Default: r.Default, Language: r.Language}
			if r.Channels != nil {
				am.Channels, _ = strconv.Atoi(*r.Channels)
			}
			audio = append(audio, am)
			v.AudioGroup = e.group
		}
		variants = append(variants, v)
	}
	if len(variants) == 0 {
		return nil, false, nil
	}
	body, err = transcode.MasterPlaylist(variants, audio)
	return body, complete, err
}
