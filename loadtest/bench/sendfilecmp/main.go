//go:build linux

// Command sendfilecmp answers one body over HTTP/1.1 keep-alive the way the
// cache's fast path does (headers and body in one writev from memory) or
// the way nginx does (headers sent with MSG_MORE, the body with sendfile
// from a file, at an offset of choice, or from a memfd), so that the CPU
// per answer of each can be compared on a machine and filesystem
// (loadtest/bench/sendfile.sh; docs/benchmarks.md, "Segments sent from
// files"). It is a measuring tool, not a server: it parses nothing but the
// end of a request head.
//
// usage: sendfilecmp -body FILE [-mode mem|file|memfd] [-dir DIR] [-offset N] [-sync] [-addr ADDR]
//
// With -mode file the body is written, once, at -offset into a new file in
// -dir (fsynced with -sync) and sent from there.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	bodyPath := flag.String("body", "", "the body to answer (a segment)")
	mode := flag.String("mode", "mem", "mem (writev from memory), file (sendfile from a file in -dir) or memfd (sendfile from a memfd)")
	dir := flag.String("dir", os.TempDir(), "where -mode file writes its file")
	offset := flag.Int64("offset", 0, "the body's offset in the file (-mode file)")
	sync := flag.Bool("sync", false, "fsync the file before serving (-mode file)")
	addr := flag.String("addr", "127.0.0.1:18090", "listen address")
	flag.Parse()
	if err := run(*bodyPath, *mode, *dir, *offset, *sync, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "sendfilecmp:", err)
		os.Exit(1)
	}
}

func run(bodyPath, mode, dir string, offset int64, sync bool, addr string) error {
	body, err := os.ReadFile(bodyPath)
	if err != nil {
		return err
	}
	if offset < 0 {
		return errors.New("-offset must not be negative")
	}
	var fd int
	switch mode {
	case "mem":
	case "file":
		f, err := os.CreateTemp(dir, "sendfilecmp-")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		defer f.Close() // keeps f, and so its descriptor, open while serving
		if _, err := f.WriteAt(body, offset); err != nil {
			return err
		}
		if sync {
			if err := f.Sync(); err != nil {
				return err
			}
		}
		fd = int(f.Fd())
	case "memfd":
		if fd, err = unix.MemfdCreate("sendfilecmp", unix.MFD_CLOEXEC); err != nil {
			return err
		}
		if _, err := unix.Pwrite(fd, body, 0); err != nil {
			return err
		}
		offset = 0
	default:
		return fmt.Errorf("unknown -mode %q", mode)
	}
	head := []byte("HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nCache-Control: public, max-age=3600\r\n\r\n")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("pid", os.Getpid(), "listening on", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		a := answerer{conn: c.(*net.TCPConn), head: head, body: body, fd: fd, off: offset, mode: mode}
		go a.serve()
	}
}

// answerer answers every request of one connection with the body.
type answerer struct {
	conn *net.TCPConn
	head []byte
	body []byte
	fd   int   // the file or memfd (not -mode mem)
	off  int64 // the body's offset in fd
	mode string
}

func (a *answerer) serve() {
	defer a.conn.Close()
	rc, err := a.conn.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 4096)
	n := 0
	for {
		m, err := a.conn.Read(buf[n:])
		if err != nil {
			return
		}
		n += m
		for {
			i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
			if i < 0 {
				if n == len(buf) {
					return // a head over 4 KiB: not a benchmark's
				}
				break
			}
			n = copy(buf, buf[i+4:n])
			if a.mode == "mem" {
				iov := net.Buffers{a.head, a.body}
				_, err = iov.WriteTo(a.conn)
			} else {
				err = a.sendFile(rc)
			}
			if err != nil {
				return
			}
		}
	}
}

// sendFile sends the head with MSG_MORE, then the body with sendfile.
func (a *answerer) sendFile(rc syscall.RawConn) error {
	head, off, end := a.head, a.off, a.off+int64(len(a.body))
	var serr error
	err := rc.Write(func(s uintptr) bool {
		for len(head) > 0 {
			n, err := unix.SendmsgN(int(s), head, nil, nil, unix.MSG_MORE)
			if err == unix.EAGAIN {
				return false
			}
			if err != nil {
				serr = err
				return true
			}
			head = head[n:]
		}
		for off < end {
			_, err := unix.Sendfile(int(s), a.fd, &off, int(end-off))
			if err == unix.EAGAIN {
				return false
			}
			if err != nil {
				serr = err
				return true
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	return serr
}
