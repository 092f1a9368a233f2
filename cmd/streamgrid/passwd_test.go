package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/streamgrid/streamgrid/internal/auth"
	"github.com/streamgrid/streamgrid/internal/auth/authreq"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestPasswd: what passwd prints is accepted as a pass and checks the password.
func TestPasswd(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"argon2", nil},
		{"sha256", []string{"--sha256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.args == nil {
				// The default, argon2 at full strength: 64 MiB and seconds a
				// hash under -race, three hashes here.
				testkit.Slow(t)
			}
			var out, errOut strings.Builder
			if code := runPasswd(tc.args, strings.NewReader("s3cret pw\n"), &out, &errOut); code != 0 {
				t.Fatalf("passwd %v: %d %s", tc.args, code, errOut.String())
			}
			c := config.Default().Auth
			c.Users = []config.AuthUser{{User: "u", Pass: strings.TrimSpace(out.String()),
				Permissions: []config.AuthPermission{{Action: "api"}}}}
			a := &auth.Authenticator{Config: c}
			if err := a.Start(); err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			req := authreq.Request{User: "u", Pass: "s3cret pw", IP: net.IPv4(192, 0, 2, 1), Action: authreq.ActionAPI}
			if err := a.Authenticate(context.Background(), req); err != nil {
				t.Errorf("passwd %v: the hash does not check the password: %v", tc.args, err)
			}
			req.Pass = "s3cret"
			if err := a.Authenticate(context.Background(), req); err == nil {
				t.Errorf("passwd %v: a wrong password passes", tc.args)
			}
		})
	}
	if code := runPasswd(nil, strings.NewReader(""), &strings.Builder{}, &strings.Builder{}); code != 2 {
		t.Errorf("empty password: exit %d", code)
	}
}
