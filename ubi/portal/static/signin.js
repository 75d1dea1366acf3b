// A sign-in link carries its token after '#', which browsers never send to a server (so it is in no log):
// move it into the form and drop it from the address bar (also when only the fragment changes).
(function () {
  function take() {
    var m = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (!m) return;
    document.getElementById("token").value = decodeURIComponent(m[1]);
    history.replaceState(null, "", window.location.pathname);
  }
  take();
  window.addEventListener("hashchange", take);
})();
