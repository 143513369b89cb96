/*
 * The course form (templates/uploads/_course_fields.html), made quicker with JavaScript.
 *
 * Without this script the form works as the server rendered it: editions filtered for
 * the subject it was sent with, the edition's free-text field always shown, and the
 * attribution line as of the last submission. With it: the editions follow the subject
 * as it is chosen, the free-text field opens only for "other", and the attribution line
 * follows the title, teacher and licence as they are typed. Every string it shows was
 * rendered by the server into the page, in the reader's language.
 *
 * ES5 on purpose: the page must work on old Android phones and PCs.
 */
(function () {
  'use strict';

  var subject = document.getElementById('course-subject');
  var edition = document.getElementById('course-edition');
  var other = document.getElementById('course-edition-other');
  var licences = document.getElementById('course-licences');
  if (!subject || !edition || !other || !licences) {
    return;
  }
  var title = document.getElementById('course-title');
  var teacher = document.getElementById('course-teacher');
  var preview = document.getElementById('attribution-preview');
  var otherLabel = other.parentNode;

  function filterEditions() {
    var chosen = subject.value;
    for (var i = 0; i < edition.options.length; i++) {
      var option = edition.options[i];
      var subjects = option.getAttribute('data-subjects');
      if (subjects === null) {
        continue; // "none" and "other" fit every subject
      }
      var fits = !chosen || (' ' + subjects + ' ').indexOf(' ' + chosen + ' ') >= 0;
      option.hidden = !fits;
      option.disabled = !fits;
      if (!fits && option.selected) {
        edition.value = '';
      }
    }
  }

  function toggleOther() {
    var isOther = edition.value === 'other';
    otherLabel.hidden = !isOther;
    other.disabled = !isOther; // a disabled field is not sent: free text goes only with "other"
  }

  function updatePreview() {
    var checked = licences.querySelector('input[name=license]:checked');
    if (!checked || !preview) {
      return;
    }
    var school = licences.getAttribute('data-school');
    var author = teacher && teacher.value.trim()
      ? licences.getAttribute('data-author').replace('[[teacher]]', teacher.value.trim()).replace('[[school]]', school)
      : school;
    var name = (title && title.value.trim()) || licences.getAttribute('data-untitled');
    preview.textContent = checked.getAttribute('data-attribution')
      .replace('[[title]]', name)
      .replace('[[author]]', author);
  }

  subject.addEventListener('change', filterEditions);
  edition.addEventListener('change', toggleOther);
  licences.addEventListener('change', updatePreview);
  if (title) {
    title.addEventListener('input', updatePreview);
  }
  if (teacher) {
    teacher.addEventListener('input', updatePreview);
  }
  filterEditions();
  toggleOther();
  updatePreview();
})();
