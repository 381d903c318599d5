package httpapi

import (
	"bytes"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"

	"go.uber.org/zap"
)

// The status page is plain HTML, CSS and JavaScript, embedded so that the
// daemon serves it with no build step and no files on disk.
//
//go:embed page
var pageFiles embed.FS

// initialStatusMark is replaced by the /status document in index.html, so
// the page draws at once and a browser dumping the DOM on load sees it.
var initialStatusMark = []byte("/*INITIAL-STATUS*/")

// pageSecurity keeps the page to its own files: no inline script runs, no
// other origin is contacted, and nobody frames it.
const pageSecurity = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func (s *Server) mountPage(mux *http.ServeMux) {
	static, err := fs.Sub(pageFiles, "page")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	files := http.StripPrefix("/page/", http.FileServerFS(static))
	mux.HandleFunc("GET /{$}", s.page)
	mux.Handle("GET /page/", securePage(files))
}

func securePage(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", pageSecurity)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	index, err := pageFiles.ReadFile("page/index.html")
	if err != nil {
		http.Error(w, "status page missing from this build", http.StatusInternalServerError)
		return
	}
	// json.Marshal escapes <, > and & as \u003c and so on, so nothing a
	// member's name holds can end the script element it sits in.
	doc, err := json.Marshal(s.statusDocument())
	if err != nil {
		s.cfg.Logger.Debug("encode status for the page", zap.Error(err))
		doc = []byte("null")
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", pageSecurity)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(bytes.Replace(index, initialStatusMark, doc, 1))
}
