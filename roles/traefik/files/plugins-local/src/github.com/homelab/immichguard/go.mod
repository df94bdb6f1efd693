module github.com/homelab/immichguard

go 1.22
