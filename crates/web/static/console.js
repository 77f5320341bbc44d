// switchboard console: small enhancements; every page works without them.
'use strict';

(function () {
  const token = document.querySelector('meta[name="csrf-token"]');
  const banner = document.getElementById('pending');
  if (!banner || !token) return;

  // A revision is on trial. Count down, and confirm it from here: while a
  // revision is pending the console closes every connection after its
  // answer, so this request travels over a new connection, through the
  // new firewall rules. If it cannot get through, nothing confirms and the
  // appliance rolls back at the deadline.
  const state = document.getElementById('pending-state');
  const countdown = document.getElementById('countdown');
  let left = parseInt(banner.dataset.seconds, 10) || 0;
  let done = false;

  const tick = setInterval(function () {
    if (done) return;
    left = Math.max(0, left - 1);
    countdown.textContent = String(left);
    if (left === 0) {
      clearInterval(tick);
      state.textContent = 'Not confirmed: the appliance rolls the change back.';
    }
  }, 1000);

  function attempt() {
    if (done || left <= 0) return;
    fetch('/v1/confirm', {
      method: 'POST',
      headers: { 'X-CSRF-Token': token.content },
      cache: 'no-store',
      credentials: 'same-origin',
    }).then(function (response) {
      if (response.ok) {
        return response.json().then(function (body) {
          done = true;
          clearInterval(tick);
          banner.classList.add('confirmed');
          banner.innerHTML = '';
          const p = document.createElement('p');
          p.id = 'confirmed';
          p.textContent = 'Revision ' + body.revision + ' confirmed: your browser still reaches the console.';
          banner.appendChild(p);
        });
      }
      return response.json().then(function (body) {
        const code = body && body.error ? body.error.code : '';
        if (code === 'nothing-pending') {
          // Confirmed elsewhere, or rolled back.
          done = true;
          state.textContent = 'Nothing is pending any more; reload the page.';
          return;
        }
        // E.g. confirm-over-new-connection: that connection is closed now,
        // the next try opens a new one.
        setTimeout(attempt, 1000);
      }, function () {
        setTimeout(attempt, 2000);
      });
    }).catch(function () {
      state.textContent = 'The console cannot be reached over a new connection; retrying. Without a confirmation the appliance rolls back.';
      setTimeout(attempt, 2000);
    });
  }
  // Let the old connection close first.
  setTimeout(attempt, 1500);
})();
