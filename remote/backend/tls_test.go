package backend

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeClientCert writes a self-signed client certificate and its key as
// PEM files.
func writeClientCert(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "narfs-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	certPath, keyPath = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	must(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return certPath, keyPath
}

// TestHTTPClientCertificate: tls-certificate/tls-private-key end up in the
// transport, and that transport authenticates to a server requiring a
// client certificate.
func TestHTTPClientCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeClientCert(t, dir)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "narfs-client" {
			http.Error(w, "no client cert", http.StatusForbidden)
			return
		}
		w.Write([]byte("ok"))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	b := mustOpen(t, srv.URL+"?tls-certificate="+cert+"&tls-private-key="+key, Options{NetrcPath: "/nonexistent"})
	tr := b.(*httpBackend).client.Transport.(*guardTransport).base.(*http.Transport)
	if tr.TLSClientConfig == nil || len(tr.TLSClientConfig.Certificates) != 1 {
		t.Fatal("client certificate not configured")
	}
	// Trust the test server (the store URL has no CA parameter) and
	// check the certificate is presented.
	tr = tr.Clone()
	tr.TLSClientConfig.RootCAs = x509.NewCertPool()
	tr.TLSClientConfig.RootCAs.AddCert(srv.Certificate())
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("mutual TLS: %v %v", resp, err)
	}
	resp.Body.Close()

	// Key and certificate in one PEM file.
	both := filepath.Join(dir, "both.pem")
	c, _ := os.ReadFile(cert)
	k, _ := os.ReadFile(key)
	must(t, os.WriteFile(both, append(c, k...), 0o600))
	mustOpen(t, srv.URL+"?tls-certificate="+both, Options{})

	for _, q := range []string{"tls-certificate=" + dir + "/missing.crt", "tls-private-key=" + key, "tls-certificate=" + cert + "&tls-private-key=" + cert} {
		_, err := Open(t.Context(), mustParse(t, srv.URL+"?"+q), Options{})
		if err == nil {
			t.Errorf("%s: opened", q)
		} else if strings.Contains(err.Error(), "PRIVATE KEY-----") {
			t.Errorf("%s: error quotes the key: %v", q, err)
		}
	}
}
