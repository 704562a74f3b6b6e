package web

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"dialtone/upload"
)

// Options.Upload gets every method below upload.Path, with its own headers
// rather than the pages' (a page's CSP and X-Frame-Options would not
// matter, but their Cache-Control: no-store on files would); without it
// the path is not found.
func TestUploadMounted(t *testing.T) {
	var got []string
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
		w.Header().Set("Cache-Control", "private")
		w.WriteHeader(http.StatusTeapot)
	})
	srv := httptest.NewServer(New(Options{Gatherer: prometheus.NewRegistry(), Upload: handler}))
	defer srv.Close()
	for _, method := range []string{"PUT", "GET", "HEAD", "OPTIONS"} {
		req, _ := http.NewRequest(method, srv.URL+upload.Path+"0123/a.jpg", nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTeapot || resp.Header.Get("Cache-Control") != "private" {
			t.Errorf("%s: %d %v", method, resp.StatusCode, resp.Header)
		}
	}
	if len(got) != 4 || got[0] != "PUT /upload/0123/a.jpg" {
		t.Errorf("the upload handler saw %v", got)
	}

	bare := httptest.NewServer(New(Options{Gatherer: prometheus.NewRegistry()}))
	defer bare.Close()
	if code, _, _ := get(t, bare, upload.Path+"0123/a.jpg"); code != http.StatusNotFound {
		t.Errorf("without Upload: %d, want 404", code)
	}
}
