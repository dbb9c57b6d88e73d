// Command linkshape runs a shaping proxy (package linkshape) in front of
// an HTTP or S3 server until interrupted, for trying narfs by hand over a
// realistic link:
//
//	linkshape -upstream http://127.0.0.1:9000 -profile s3-region
//
// It prints the proxy's URL on standard output, then, at exit, how many
// requests and bytes it handed on.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/narfs/narfs/integration/linkshape"
)

func main() {
	upstream := flag.String("upstream", "", "base `URL` of the server to forward to (required)")
	profile := flag.String("profile", "s3-region", "loopback, s3-region, wan, or ttfb=20ms,rate=90MB[,total=200MB]")
	upstreamHost := flag.Bool("upstream-host", false, "send the upstream's Host header instead of the client's (for CDNs and virtual hosts; never for S3)")
	flag.Parse()
	if *upstream == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	p, err := linkshape.ParseProfile(*profile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var opts []linkshape.Option
	if *upstreamHost {
		opts = append(opts, linkshape.WithUpstreamHost())
	}
	px, err := linkshape.Start(*upstream, p, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(px.URL())
	fmt.Fprintf(os.Stderr, "linkshape: %s -> %s as %v; interrupt to stop\n", px.URL(), *upstream, p)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	px.Close()
	n, sent := px.Stats()
	fmt.Fprintf(os.Stderr, "linkshape: %d requests, %d bytes sent, %d bytes received\n", n, sent, px.BytesReceived())
}
