# Makefile: a thin front for ./dev, which installs what is missing first.
.PHONY: all demo test deps
all:
	./dev build
demo test deps:
	./dev $@
