package backend

import (
	"crypto/tls"
	"fmt"
	"net/http"
)

// clientCertificates loads the store's tls-certificate/tls-private-key (Nix
// ≥2.34: a client certificate for mutual TLS). The key may live in the
// certificate's PEM file. Go presents the certificate to any server of this
// backend that asks for one — in practice the cache host; Nix limits it to
// the cache's own authority.
func clientCertificates(u *StoreURL) ([]tls.Certificate, error) {
	cert, key := u.Params.Get("tls-certificate"), u.Params.Get("tls-private-key")
	switch {
	case cert == "" && key == "":
		return nil, nil
	case cert == "":
		return nil, fmt.Errorf("tls-private-key given without tls-certificate")
	case key == "":
		key = cert
	}
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		// The error names the files, never their content.
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	return []tls.Certificate{c}, nil
}

// applyClientCerts adds certs to t's TLS configuration.
func applyClientCerts(t *http.Transport, certs []tls.Certificate) {
	if len(certs) == 0 {
		return
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	} else {
		t.TLSClientConfig = t.TLSClientConfig.Clone()
	}
	t.TLSClientConfig.Certificates = certs
}
