"""Reach: what the famous schools' lessons reach in rural schools, counted per lesson, school and day."""
