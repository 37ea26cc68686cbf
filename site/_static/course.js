// On a phone the Book theme shows its own sidebar buttons, but pydata-sphinx-theme 0.17-0.20 wires only the first
// ".primary-toggle" / ".secondary-toggle" in the page - a hidden one - so tapping the visible buttons did nothing
// (pydata-sphinx-theme issue #2451). On a narrow screen, a tap on any other such button is passed to the wired one.
document.addEventListener("DOMContentLoaded", () => {
  const narrow = window.matchMedia("(max-width: 959.98px)");
  for (const side of ["primary", "secondary"]) {
    const [wired, ...others] = document.querySelectorAll(`.${side}-toggle`);
    for (const button of others) {
      button.addEventListener("click", (event) => {
        if (!narrow.matches || !wired) return;
        event.preventDefault();
        event.stopImmediatePropagation();
        wired.click();
      }, true);
    }
  }
});
