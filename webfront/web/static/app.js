// Small, unobtrusive enhancements. The site works without them.
"use strict";

function charactersLeft(left) {
  const n = Math.abs(left);
  const noun = n === 1 ? "character" : "characters";
  return left >= 0 ? `${n} ${noun} left` : `${n} ${noun} too many`;
}

// Live counter for the post box, in place of the static "Up to 280 characters" (the limit
// counts code points after trimming, as the server does). Screen readers hear only the
// crossing of the limit, through a separate live region, not every keystroke.
function setUpCounter(area) {
  const counter = document.getElementById(area.dataset.counter);
  if (!counter) return;
  const limit = Number(area.dataset.limit) || 280;
  const announce = document.createElement("span");
  announce.className = "visually-hidden";
  announce.setAttribute("aria-live", "polite");
  counter.after(announce);
  let wasOver = false;
  const update = () => {
    const left = limit - Array.from(area.value.trim()).length;
    counter.textContent = charactersLeft(left);
    counter.classList.toggle("over", left < 0);
    const button = area.form && area.form.querySelector("button[type=submit]");
    if (button) button.disabled = left < 0;
    if (left < 0 !== wasOver) {
      wasOver = left < 0;
      announce.textContent = wasOver ? `Too long: more than ${limit} characters.`
        : `Within ${limit} characters again.`;
    }
  };
  area.addEventListener("input", update);
  update();
}

// A post is gone for good: ask before a delete form is sent.
function confirmDelete(event) {
  if (event.target.matches("form.delete") && !window.confirm("Delete this post for good?")) {
    event.preventDefault();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("textarea[data-counter]").forEach(setUpCounter);
  document.addEventListener("submit", confirmDelete);
});
