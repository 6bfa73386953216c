# lmfs build. `make` builds ./lmfs and fetches the ONNX Runtime library into ./lib;
# `make test` runs the whole suite (root and /dev/fuse needed for the mount tests).
GO ?= go
ORT_VERSION ?= 1.24.3

.PHONY: all build ort ort-gpu deps test fuzz bench bench-fs bench-codec bench-lm clean

all: deps ort build

build:
	$(GO) build -o lmfs ./cmd/lmfs

ort:
	ORT_VERSION=$(ORT_VERSION) bash scripts/fetch-ort.sh lib

# Optional, for NVIDIA GPUs: ONNX Runtime with its CUDA provider in ./lib-gpu (about 260 MiB;
# README "NVIDIA GPU"): lmfs mount --device cuda --ort-lib lib-gpu/libonnxruntime.so.1 ...
# Nothing else depends on it.
ort-gpu:
	bash scripts/fetch-ort-gpu.sh lib-gpu

deps:
	bash scripts/install-deps.sh

test: all
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 25m ./...
	# Again with one OS thread for Go code (servers included), where scheduling differs.
	GOMAXPROCS=1 $(GO) test -count=1 -short -timeout 15m ./test/ ./blockstore/
	$(MAKE) fuzz

# Each fuzz target runs briefly on top of its committed seed corpus (testdata/fuzz). The budget
# is a count of executions, not a duration: Go 1.26's coordinator can report a bare "context
# deadline exceeded" failure when a -fuzztime duration expires mid-call (go.dev/issue/75804,
# fixed in 1.27); a count has no deadline to race. Counts give about 5 s each on 2 cores;
# FUZZ_X multiplies them all (FUZZ_X=20 for a longer hunt).
FUZZ_X ?= 1
FUZZ_TARGETS = \
	./codec/:FuzzDecodeRecord:50000 \
	./codec/:FuzzLMDecode:600 \
	./model/:FuzzParse:20000 \
	./blockstore/segment/:FuzzSegmentEntry:15000 \
	./blockstore/:FuzzParseGroup:30000 \
	./blockstore/:FuzzParseRef:35000 \
	./blockstore/:FuzzInodeRecord:50000 \
	./blockstore/:FuzzDirent:50000 \
	./blockstore/:FuzzACL:40000 \
	./blockstore/:FuzzStoreRecords:5000 \
	./blockstore/:FuzzCheckTable:50000 \
	./blockstore/:FuzzParseManifest:12000
fuzz:
	@set -e; for spec in $(FUZZ_TARGETS); do \
		pkg=$${spec%%:*}; rest=$${spec#*:}; t=$${rest%%:*}; n=$${rest#*:}; \
		echo "fuzz $$t ($$pkg) $$(( n * $(FUZZ_X) ))x"; \
		$(GO) test -run XXX -fuzz "^$$t\$$" -fuzztime $$(( n * $(FUZZ_X) ))x $$pkg; \
	done

# Benchmarks print tables (README has the results); they are measurements, not tests.
bench: bench-fs bench-codec bench-lm

bench-fs: build
	bash scripts/bench-fs.sh

bench-lm: build
	bash scripts/bench-lm.sh

bench-codec: build
	./lmfs bench --quiet ../shared/corpus/dev
	$(GO) test -run XXX -bench . -benchtime 2x ./codec/ ./model/

clean:
	rm -rf lmfs lib lib-gpu build

# Disk space: write 1 GiB, delete it, show the store's size on disk shrink (SIZE_MIB, WAIT).
.PHONY: bench-space
bench-space: build
	bash scripts/bench-space.sh

# Load: several processes of mixed file operations on one mount for STRESS_DURATION, then
# unmount, fsck, remount and a byte-for-byte check (scripts/stress.sh, test/stress).
STRESS_DURATION ?= 2m
.PHONY: stress
stress: build
	STRESS_DURATION=$(STRESS_DURATION) bash scripts/stress.sh
