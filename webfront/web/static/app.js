// Small, unobtrusive enhancements. The site works without them.
"use strict";

// Characters-left counter for the compose box (the limit counts code points after trimming,
// as the server does).
function setUpCounter(area) {
  const counter = document.getElementById(area.dataset.counter);
  if (!counter) return;
  const limit = Number(area.getAttribute("maxlength")) || 280;
  area.removeAttribute("maxlength"); // let people paste and trim; the counter shows the excess
  const update = () => {
    const left = limit - Array.from(area.value.trim()).length;
    counter.textContent = left >= 0 ? `${left} characters left` : `${-left} characters too many`;
    counter.classList.toggle("over", left < 0);
    const button = area.form && area.form.querySelector("button[type=submit]");
    if (button) button.disabled = left < 0;
  };
  area.addEventListener("input", update);
  update();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("textarea[data-counter]").forEach(setUpCounter);
});
