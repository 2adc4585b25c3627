// The hello server on fasthttp, a peer of bench/http.sh and bench/idle.sh: "Hello, World!"
// as text/plain on every path, on 127.0.0.1:PORT (the only argument). Run it with
// GOMAXPROCS=1 for one worker thread, like the other servers. Built from Debian's packages:
// GO111MODULE=off GOPATH=/usr/share/gocode go build.
package main

import (
	"os"

	"github.com/valyala/fasthttp"
)

func main() {
	body := []byte("Hello, World!")
	s := &fasthttp.Server{
		Name: "fasthttp",
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.SetBody(body)
		},
	}
	if err := s.ListenAndServe("127.0.0.1:" + os.Args[1]); err != nil {
		panic(err)
	}
}
