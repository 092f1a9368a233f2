package hlsproto

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		raw, want, err string
	}{
		{raw: "", want: ""},
		{raw: "token=abc&x=1", want: ""},
		{raw: "_HLS_msn=12", want: "_HLS_msn=12"},
		{raw: "_HLS_part=2&_HLS_msn=12&t=9", want: "_HLS_msn=12&_HLS_part=2"},
		{raw: "_HLS_skip=v2&_HLS_msn=3", want: "_HLS_msn=3&_HLS_skip=v2"},
		{raw: "_HLS_skip=YES", want: "_HLS_skip=YES"},
		{raw: "%5FHLS%5Fmsn=7", want: "_HLS_msn=7"},
		{raw: "_HLS_msn=9999999999999999999", want: "_HLS_msn=9999999999999999999"},
		{raw: "_HLS_msn=99999999999999999999", err: "bad _HLS_msn"},
		{raw: "_HLS_msn=-1", err: "bad _HLS_msn"},
		{raw: "_HLS_msn=+1", err: "bad _HLS_msn"},
		{raw: "_HLS_msn=", err: "bad _HLS_msn"},
		{raw: "_HLS_msn=1&_HLS_msn=1", err: "repeated _HLS_msn"},
		{raw: "_HLS_part=1", err: "_HLS_part without _HLS_msn"},
		{raw: "_HLS_msn=1&_HLS_part=x", err: "bad _HLS_part"},
		{raw: "_HLS_msn=1&_HLS_part=1&_HLS_part=2", err: "repeated _HLS_part"},
		{raw: "_HLS_skip=no", err: "bad _HLS_skip"},
		{raw: "_HLS_skip=YES&_HLS_skip=YES", err: "repeated _HLS_skip"},
		{raw: "_HLS_msn=%zz", err: "bad _HLS_msn"},
	} {
		d, err := Parse(c.raw)
		if c.err != "" {
			var e *Error
			if !errors.As(err, &e) || err.Error() != c.err {
				t.Errorf("Parse(%q) error = %v, want %q", c.raw, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", c.raw, err)
			continue
		}
		if got := d.Encode(); got != c.want {
			t.Errorf("Parse(%q).Encode() = %q, want %q", c.raw, got, c.want)
		}
		if d.Blocking() != d.HasMSN {
			t.Errorf("Parse(%q).Blocking() = %v", c.raw, d.Blocking())
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("_HLS_msn=1&_HLS_part=2&_HLS_skip=YES")
	f.Add("a=b&%5FHLS%5Fmsn=3")
	f.Fuzz(func(t *testing.T, raw string) {
		d, err := Parse(raw)
		if err != nil {
			return
		}
		// What Parse accepts, Encode renders back to the same directives.
		again, err := Parse(d.Encode())
		if err != nil || again != d {
			t.Fatalf("Parse(%q) = %+v, re-parse of %q = %+v, %v", raw, d, d.Encode(), again, err)
		}
	})
}
