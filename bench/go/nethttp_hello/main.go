// The hello server on Go's net/http, a peer of bench/idle.sh: "Hello, World!" as text/plain
// on every path, on 127.0.0.1:PORT (the only argument). Run it with GOMAXPROCS=1.
package main

import (
	"net/http"
	"os"
)

func main() {
	body := []byte("Hello, World!")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], h); err != nil {
		panic(err)
	}
}
