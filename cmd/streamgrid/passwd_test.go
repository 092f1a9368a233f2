package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/streamgrid/streamgrid/internal/auth"
	"github.com/streamgrid/streamgrid/internal/config"
)

// TestPasswd: what passwd prints is accepted as a pass and checks the password.
func TestPasswd(t *testing.T) {
	for _, args := range [][]string{nil, {"--sha256"}} {
		var out, errOut strings.Builder
		if code := runPasswd(args, strings.NewReader("s3cret pw\n"), &out, &errOut); code != 0 {
			t.Fatalf("passwd %v: %d %s", args, code, errOut.String())
		}
		c := config.Default().Auth
		c.Users = []config.AuthUser{{User: "u", Pass: strings.TrimSpace(out.String()),
			Permissions: []config.AuthPermission{{Action: "api"}}}}
		a := &auth.Authenticator{Config: c}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		req := auth.Request{User: "u", Pass: "s3cret pw", IP: net.IPv4(192, 0, 2, 1), Action: auth.ActionAPI}
		if err := a.Authenticate(context.Background(), req); err != nil {
			t.Errorf("passwd %v: the hash does not check the password: %v", args, err)
		}
		req.Pass = "s3cret"
		if err := a.Authenticate(context.Background(), req); err == nil {
			t.Errorf("passwd %v: a wrong password passes", args)
		}
		a.Close()
	}
	if code := runPasswd(nil, strings.NewReader(""), &strings.Builder{}, &strings.Builder{}); code != 2 {
		t.Errorf("empty password: exit %d", code)
	}
}
