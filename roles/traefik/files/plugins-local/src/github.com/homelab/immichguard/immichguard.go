// SPDX-License-Identifier: GPL-3.0-or-later
// Copyright: homelab.immich_proxy contributors

// Package immichguard is the guard in front of Immich that Traefik's own
// middlewares cannot be: only the public Host (with its port) passes, others get
// 421; a declared body over the limit gets 413 before it is read (a chunked one
// is cut at the limit); X-Real-IP and X-Forwarded-For are set for Immich.
//
// Traefik's own forwarded-headers handling keeps a trusted proxy's
// X-Forwarded-For and appends the peer's address to it, and sets X-Real-IP to
// the peer when absent. Immich's guide and the other roles of homelab.immich_proxy
// give Immich the real client instead: the right-most address of a trusted
// proxy's chain that is not itself a trusted proxy (nginx's real_ip_recursive),
// with the chain cut after it. From anyone else both headers are the peer's
// address, whatever the client sent. Run with the entrypoint's
// forwardedHeaders.notAppendXForwardedFor, so Traefik sends the result as is.
package immichguard

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Config is the middleware's dynamic configuration.
type Config struct {
	// TrustedIPs are the proxies in front whose X-Forwarded-For is believed.
	TrustedIPs []string `json:"trustedIPs,omitempty"`
	// Hosts are the Host header values that may reach Immich (case-insensitive).
	Hosts []string `json:"hosts,omitempty"`
	// MaxBodyBytes is the largest request body; 0: no limit.
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty"`
}

// CreateConfig returns the default configuration: no trusted proxy.
func CreateConfig() *Config {
	return &Config{}
}

type forwarded struct {
	next    http.Handler
	trusted []*net.IPNet
	hosts   map[string]bool
	maxBody int64
}

// New builds the middleware; a trusted entry that is not an address or a network is an error.
func New(_ context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	handler := &forwarded{next: next, hosts: map[string]bool{}, maxBody: config.MaxBodyBytes}
	for _, host := range config.Hosts {
		handler.hosts[strings.ToLower(host)] = true
	}
	for _, entry := range config.TrustedIPs {
		text := strings.TrimSpace(entry)
		if !strings.Contains(text, "/") {
			if strings.Contains(text, ":") {
				text += "/128"
			} else {
				text += "/32"
			}
		}
		_, network, err := net.ParseCIDR(text)
		if err != nil {
			return nil, fmt.Errorf("%s: trustedIPs entry %q is not an address or a network", name, entry)
		}
		handler.trusted = append(handler.trusted, network)
	}
	return handler, nil
}

func (f *forwarded) isTrusted(text string) bool {
	ip := net.ParseIP(text)
	if ip == nil {
		return false
	}
	for _, network := range f.trusted {
		if network.Contains(ip) {
			return true
		}
	}
	return false
}

func (f *forwarded) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	// Traefik's Host() rule ignores the port, and an absolute URI's host is
	// req.Host: only the public authority itself reaches Immich.
	if len(f.hosts) > 0 && !f.hosts[strings.ToLower(req.Host)] {
		http.Error(rw, "Misdirected Request", http.StatusMisdirectedRequest)
		return
	}
	if f.maxBody > 0 {
		if req.ContentLength > f.maxBody {
			http.Error(rw, "Request Entity Too Large", http.StatusRequestEntityTooLarge)
			return
		}
		if req.ContentLength != 0 {
			// a chunked body is streamed, and cut where it passes the limit
			req.Body = http.MaxBytesReader(rw, req.Body, f.maxBody)
		}
	}
	peer, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		peer = req.RemoteAddr
	}
	// one assignment a line: Yaegi mishandles a tuple assignment here
	client := peer
	chain := peer
	if f.isTrusted(peer) {
		var parts []string
		for _, line := range req.Header.Values("X-Forwarded-For") {
			for _, part := range strings.Split(line, ",") {
				parts = append(parts, strings.TrimSpace(part))
			}
		}
		last := len(parts) - 1
		for last > 0 && f.isTrusted(parts[last]) {
			last--
		}
		if last >= 0 && net.ParseIP(parts[last]) != nil {
			client = parts[last]
			chain = strings.Join(parts[:last+1], ", ")
		}
	}
	// Traefik says ws/wss on a websocket upgrade; Immich's guide sends the scheme.
	switch req.Header.Get("X-Forwarded-Proto") {
	case "ws":
		req.Header.Set("X-Forwarded-Proto", "http")
	case "wss":
		req.Header.Set("X-Forwarded-Proto", "https")
	}
	req.Header.Set("X-Real-IP", client)
	req.Header.Set("X-Forwarded-For", chain)
	f.next.ServeHTTP(rw, req)
}
