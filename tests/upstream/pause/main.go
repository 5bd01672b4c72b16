// The pod sandbox ("pause") image's program, and a test container. No image
// registry is reachable from this project's machines, so registry.k8s.io/pause
// cannot be pulled: scripts/build-upstream builds this program (static) and
// packs it into a local image, localhost/mk8s/pause:1.0 (see mkimage.py and
// ../README.md), that containerd imports and the kubelet uses as its sandbox
// image; the same image serves as the tests' container.
//
//	/pause          wait for SIGTERM or SIGINT, then exit 0 (the sandbox)
//	/pause loop     print "mk8s-pause: a log line" now and every 5 s (logs)
//	/pause get URL  GET URL now and every 5 s, print the result (network)
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	// Registered first, so the program exits 0 on a signal in every mode.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)

	var tick func()
	switch {
	case len(os.Args) == 1:
	case len(os.Args) == 2 && os.Args[1] == "loop":
		tick = func() { fmt.Print("mk8s-pause: a log line\n") }
	case len(os.Args) == 3 && os.Args[1] == "get":
		url := os.Args[2]
		c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		tick = func() {
			r, err := c.Get(url)
			if err != nil {
				fmt.Println("GET error:", err)
				return
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			fmt.Printf("GET %s -> %d %q\n", url, r.StatusCode, b)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: pause | pause loop | pause get URL")
		os.Exit(2)
	}

	if tick == nil {
		<-sig
		return
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		tick()
		select {
		case <-sig:
			return
		case <-t.C:
		}
	}
}
