package bus

import (
	"errors"
	"strings"
	"testing"
)

func TestValidatePath(t *testing.T) {
	good := []string{"live/cam1", "rtmp/c1.live", "a", "x-y_z~1/B.2/c", strings.Repeat("a", MaxPathLen)}
	bad := []string{"", "/live", "live/", "live//cam", "../etc", "live/..", "live/./x", "a b", "a*b", "a>b", "a\x00", "ä", "live/cam?x", strings.Repeat("a", MaxPathLen+1)}
	for _, p := range good {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v", p, err)
		}
	}
	for _, p := range bad {
		if err := ValidatePath(p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ValidatePath(%q) = %v, want ErrInvalidPath", p, err)
		}
	}
}

func TestEncodePath(t *testing.T) {
	cases := map[string]string{
		"live/cam1":    "live=2Fcam1",
		"rtmp/c1.live": "rtmp=2Fc1=2Elive",
		"a*b>c d":      "a=2Ab=3Ec=20d",
		"plain_name-1": "plain_name-1",
		"x=y~":         "x=3Dy=7E",
	}
	for in, want := range cases {
		got := EncodePath(in)
		if got != want {
			t.Errorf("EncodePath(%q) = %q, want %q", in, got, want)
		}
		back, err := DecodePath(got)
		if err != nil || back != in {
			t.Errorf("DecodePath(%q) = %q, %v", got, back, err)
		}
		if MediaSubject(in) != "sg.media."+want {
			t.Errorf("MediaSubject(%q) = %q", in, MediaSubject(in))
		}
	}
	for _, bad := range []string{"a=", "a=4", "a=zz", "a=41" /* needless escape of 'A' */, "a.b", "a b"} {
		if _, err := DecodePath(bad); err == nil {
			t.Errorf("DecodePath(%q) accepted", bad)
		}
	}
}

func FuzzEncodePath(f *testing.F) {
	for _, s := range []string{"live/cam1", "rtmp/c1.live", "a*b>c", "", "=", "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tok := EncodePath(p)
		for i := 0; i < len(tok); i++ {
			if !tokenByte(tok[i]) && tok[i] != '=' {
				t.Fatalf("EncodePath(%q) = %q has byte %q", p, tok, tok[i])
			}
		}
		back, err := DecodePath(tok)
		if err != nil || back != p {
			t.Fatalf("round trip of %q: %q, %v", p, back, err)
		}
	})
}

func FuzzDecodePath(f *testing.F) {
	for _, s := range []string{"live=2Fcam1", "a=", "=2", "abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := DecodePath(tok)
		if err != nil {
			return
		}
		if EncodePath(p) != tok {
			t.Fatalf("DecodePath(%q) = %q does not re-encode", tok, p)
		}
	})
}
