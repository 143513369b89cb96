"""Textbooks (教材) as data: subject + edition + grade + volume with a chapter tree that lessons attach to."""
