"""The book's tooling, apart from the science: parameters (:mod:`.params`), running notebooks and
building the HTML (:mod:`.runner`), the headless-browser check (:mod:`.check`) and the command line
(:mod:`.cli`)."""
