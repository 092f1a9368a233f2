package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Bounds on argon2 parameters: a configured hash is computed on every login
// attempt, so a typo (m=6553600) must not let one attempt take gigabytes.
const (
	maxArgon2Memory  = 256 << 10 // KiB: 256 MiB
	maxArgon2Time    = 16
	maxArgon2Threads = 64
	maxArgon2KeyLen  = 128
)

// password is a configured password: plain, or a hash of one.
type password struct {
	kind  passKind
	plain []byte // passPlain
	sum   []byte // passSHA256: the digest; passArgon2: the derived key
	a2    argon2Params
}

type passKind int

const (
	passPlain passKind = iota
	passSHA256
	passArgon2
)

type argon2Params struct {
	variant string // argon2id or argon2i
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
}

// parsePassword reads a pass value of the auth section: plain text,
// "sha256:<base64 of the SHA-256 digest>" or "argon2:<PHC string>"
// ($argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>, unpadded base64 as the
// argon2 tool prints it).
func parsePassword(s string) (password, error) {
	switch {
	case strings.HasPrefix(s, "sha256:"):
		sum, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "sha256:"))
		if err != nil {
			return password{}, fmt.Errorf("sha256: hash is not base64: %w", err)
		}
		if len(sum) != sha256.Size {
			return password{}, fmt.Errorf("sha256: hash must decode to %d bytes, got %d", sha256.Size, len(sum))
		}
		return password{kind: passSHA256, sum: sum}, nil
	case strings.HasPrefix(s, "argon2:"):
		p, key, err := parsePHC(strings.TrimPrefix(s, "argon2:"))
		if err != nil {
			return password{}, fmt.Errorf("argon2: %w", err)
		}
		return password{kind: passArgon2, sum: key, a2: p}, nil
	default:
		return password{kind: passPlain, plain: []byte(s)}, nil
	}
}

// parsePHC parses $argon2id$v=19$m=..,t=..,p=..$salt$hash.
func parsePHC(s string) (argon2Params, []byte, error) {
	var p argon2Params
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return p, nil, errors.New("want $argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<hash>")
	}
	p.variant = f[1]
	if p.variant != "argon2id" && p.variant != "argon2i" {
		return p, nil, fmt.Errorf("variant %q is not argon2id or argon2i", p.variant)
	}
	if f[2] != "v=19" {
		return p, nil, fmt.Errorf("version %q is not v=19", f[2])
	}
	seen := map[string]bool{}
	for kv := range strings.SplitSeq(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return p, nil, fmt.Errorf("parameter %q is not key=<number>", kv)
		}
		switch k {
		case "m":
			if n < 8 || n > maxArgon2Memory {
				return p, nil, fmt.Errorf("m=%d: memory must be 8..%d KiB", n, maxArgon2Memory)
			}
			p.memory = uint32(n)
		case "t":
			if n < 1 || n > maxArgon2Time {
				return p, nil, fmt.Errorf("t=%d: passes must be 1..%d", n, maxArgon2Time)
			}
			p.time = uint32(n)
		case "p":
			if n < 1 || n > maxArgon2Threads {
				return p, nil, fmt.Errorf("p=%d: threads must be 1..%d", n, maxArgon2Threads)
			}
			p.threads = uint8(n)
		default:
			return p, nil, fmt.Errorf("unknown parameter %q", k)
		}
		seen[k] = true
	}
	if !seen["m"] || !seen["t"] || !seen["p"] {
		return p, nil, errors.New("m, t and p are all required")
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(f[4]); err != nil || len(p.salt) < 8 {
		return p, nil, errors.New("salt must be unpadded base64 of at least 8 bytes")
	}
	key, err := base64.RawStdEncoding.DecodeString(f[5])
	if err != nil || len(key) < 16 || len(key) > maxArgon2KeyLen {
		return p, nil, fmt.Errorf("hash must be unpadded base64 of 16..%d bytes", maxArgon2KeyLen)
	}
	return p, key, nil
}

// plainText reports the password and true when it is stored in the clear:
// only then can a challenge-response scheme (RTSP Digest) check it.
func (p password) plainText() (string, bool) { return string(p.plain), p.kind == passPlain }

// expensive reports whether checking costs real CPU and memory (argon2).
func (p password) expensive() bool { return p.kind == passArgon2 }

// matches compares a password sent by a client, in constant time.
func (p password) matches(got string) bool {
	switch p.kind {
	case passSHA256:
		sum := sha256.Sum256([]byte(got))
		return subtle.ConstantTimeCompare(sum[:], p.sum) == 1
	case passArgon2:
		a := p.a2
		var key []byte
		if a.variant == "argon2id" {
			key = argon2.IDKey([]byte(got), a.salt, a.time, a.memory, a.threads, uint32(len(p.sum)))
		} else {
			key = argon2.Key([]byte(got), a.salt, a.time, a.memory, a.threads, uint32(len(p.sum)))
		}
		return subtle.ConstantTimeCompare(key, p.sum) == 1
	default:
		return subtle.ConstantTimeCompare([]byte(got), p.plain) == 1
	}
}

// HashSHA256 returns the "sha256:..." form of a password for the pass key.
func HashSHA256(pass string) string {
	sum := sha256.Sum256([]byte(pass))
	return "sha256:" + base64.StdEncoding.EncodeToString(sum[:])
}

// HashArgon2 returns the "argon2:$argon2id$..." form of a password for the
// pass key, with the given salt (at least 8 random bytes) and the RFC 9106
// second recommended parameters (m=64 MiB, t=3, p=4).
func HashArgon2(pass string, salt []byte) string {
	return hashArgon2(pass, salt, 64<<10, 3, 4)
}

// hashArgon2 is HashArgon2 with chosen parameters (tests use cheap ones).
func hashArgon2(pass string, salt []byte, m, t uint32, p uint8) string {
	key := argon2.IDKey([]byte(pass), salt, t, m, p, 32)
	return fmt.Sprintf("argon2:$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}
