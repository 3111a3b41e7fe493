"""The book's tooling, apart from the science: parameters (:mod:`.params`), running notebooks and
building the HTML (:mod:`.runner`), the headless-browser check (:mod:`.check`) and the command line
(:mod:`.cli`); :mod:`.progress` prints long runs' progress, :mod:`.pages` writes the generated pages the book
includes, :mod:`.static_check` checks the built HTML without a browser."""
